"""TCFP (seed thesis 002, its first method): filters clustered by function, L2 pruning
inside each cluster, then soft pruning between clusters judged by their effect on the loss.

1. *A filter's function*, "the feature representation after its maximum activation": on the
   calibration crops (the maps `feature_maps.py` reads for HRank and CHIP), the layer's
   response where the channel fires hardest, i.e. every channel of its group at that pixel,
   each divided by its own largest |activation| (`PeakFeatures`). Filters that fire hardest
   on the same feature share it, whatever their weights. The closest published method,
   functionality-oriented filter pruning (Qin et al. 2018), also removes filters of repeated
   function, read by visualising what activates each filter (not reproduced here: a
   backward pass per filter, where this needs one forward pass for the whole model).
2. *Clusters per layer* (`function_clusters`): complete-linkage agglomeration (scipy) of the
   cosine distances between functions cut at `distance`, so every two members are that
   alike (the thesis names no algorithm; a threshold needs no cluster count). Channels
   that never fire (peak <= 0) have no function: one cluster of their own.
3. *L2 pruning inside each cluster* (`first_pruning`), once, before training: all members
   but a cluster's largest-norm filter are candidates, lowest normalised L2 norm first,
   until `first_share` of the MAC cut is met. They go for good: their templates are set
   to 0 (exactly what removal will do) and stay there.
4. *Clusters judged by their effect on the loss*: the first-order Taylor estimate of the loss
   change if a cluster's remaining filters go, (sum of their template gradients)^2 averaged
   over batches, Molchanov et al. 2019's group criterion with the templates (at 1, never
   stepped) as its gates; read on the crops before training, then at every training step.
5. *Soft pruning between clusters while fine-tuning, its threshold found by bisection*: as
   SFP (`soft.py`), before training and after every epoch the clusters whose effect
   (normalised by its group's mean, as Molchanov et al. 2017 normalise Taylor per layer)
   is below a threshold are zeroed and keep training; the last selection is removed. The
   threshold is `hqs_l0.lambda_for_target`'s bisection (via `decide_by_score`, within
   `max_layer_pruning` and the templates' rules), so the kept MACs meet the target
   exactly: the one cluster straddling it loses only its lowest-norm filters, where a
   whole-cluster cut would overshoot by up to a cluster.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pipeline.pruning.allocation import normalise_per_group
from pipeline.pruning.feature_maps import find_readers, tied_share, visit_feature_maps
from pipeline.pruning.filters import filter_norms
from pipeline.pruning.hqs_l0 import decide_by_score
from pipeline.pruning.method import PruneContext
from pipeline.pruning.soft import ResetToZero, SfpMethod, SoftPruner
from pipeline.pruning.templates import Group, Templates


class PeakFeatures:
    """Per group, each channel's largest activation over the crops seen and the group's
    response at that pixel; `visit` is a `feature_maps.Visit`."""

    def __init__(self) -> None:
        self.peak: dict[str, Tensor] = {}
        self.response: dict[str, Tensor] = {}  # row c: every channel at c's peak pixel
        self.scale: dict[str, Tensor] = {}  # per channel, its largest |activation|

    def visit(self, group: Group, maps: Tensor) -> None:
        x, name = maps.transpose(0, 1).flatten(1), group.name  # (channels, pixels of the batch)
        peak, where = x.max(1)
        response, scale = x[:, where].T, x.abs().amax(1)
        if name not in self.peak:
            self.peak[name], self.response[name], self.scale[name] = peak, response, scale
            return
        higher = peak > self.peak[name]  # strictly: of equal peaks the first seen stays
        self.peak[name] = torch.where(higher, peak, self.peak[name])
        self.response[name] = torch.where(higher[:, None], response, self.response[name])
        self.scale[name] = torch.maximum(self.scale[name], scale)

    def functions(self, name: str) -> tuple[Tensor, Tensor]:
        """(functions, fires) of a group on the CPU: row c the response at c's peak, each
        channel divided by its largest |activation|; fires: the channel's peak is > 0."""
        scale = self.scale[name]
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (self.response[name] / scale).cpu(), (self.peak[name] > 0).cpu()


def function_clusters(functions: Tensor, fires: Tensor, distance: float) -> Tensor:
    """Per channel, its cluster (0, 1, ...): complete linkage on the cosine distance between
    functions, cut at `distance`; the channels that never fire share one more cluster."""
    labels = torch.zeros(len(functions), dtype=torch.long)
    alive = fires.nonzero().flatten()
    if len(alive) > 1:  # rounding can make an identical pair's distance a hair below 0
        distances = np.clip(pdist(functions[alive].double().numpy(), "cosine"), 0, None)
        labels[alive] = torch.as_tensor(fcluster(linkage(distances, "complete"), distance, "distance") - 1).long()
    labels[~fires] = int(labels[alive].max()) + 1 if len(alive) else 0
    return labels


def redundant_members(clusters: Tensor, norms: Tensor) -> Tensor:
    """Per entry, True unless it is the largest-norm filter of its cluster."""
    redundant = torch.ones(len(clusters), dtype=torch.bool)
    for label in clusters.unique():
        members = (clusters == label).nonzero().flatten()
        redundant[members[norms[members].argmax()]] = False
    return redundant


def first_pruning(templates: Templates, clusters: Tensor, norms: Tensor, reduction: float) -> Tensor:
    """Per entry, True if the L2 pruning inside clusters removes it: the redundant members
    (`redundant_members`) with the lowest norms (normalised per group) go until the MACs fall
    by `reduction`, within the templates' rules. `clusters` are unique across groups."""
    redundant = redundant_members(clusters, norms)
    scores = normalise_per_group(templates, norms)
    scores = torch.where(redundant, scores, scores + scores.max() + 1)  # the others never go first
    keep, _ = decide_by_score(templates, scores, reduction)
    return ~keep & redundant


def cut_clusters(templates: Templates, clusters: Tensor, effect: Tensor, norms: Tensor, first: Tensor,
                 reduction: float) -> tuple[Tensor, Tensor, Tensor, float]:
    """(keep, per-entry normalised cluster effect, the entries that score kept, threshold):
    entries ordered by their cluster's `effect` normalised per group, then by their own norm
    normalised per group, the first-pruned ones before all; the cut in that order is the
    bisection of `decide_by_score`. The threshold is the largest normalised effect of a
    cluster it removed filters of (0 if none): below it every cluster goes whole."""
    alive = ~first  # +inf is left out of a group's mean: the first-pruned do not dilute it
    score = normalise_per_group(templates, torch.where(first, torch.inf, effect.double()[clusters].float()))
    score = torch.where(first, 0.0, score)
    norm = normalise_per_group(templates, norms)
    order = torch.argsort(norm, stable=True)
    order = order[torch.argsort(torch.where(first, -1.0, score)[order], stable=True)]
    rank = torch.empty(len(order))
    rank[order] = torch.arange(1, len(order) + 1, dtype=rank.dtype)
    keep, by_score = decide_by_score(templates, rank, reduction)
    cut = ~by_score & alive
    return keep, score, by_score, float(score[cut].max()) if cut.any() else 0.0


class TcfpPruner(SoftPruner):
    """SFP's schedule (`ResetToZero`) with TCFP's choice: clusters cut by their loss effect.

    Per optimiser step it folds the templates' gradients into per-cluster sums on their
    device and clears them before the step, so the templates stay where they are and nothing
    is read back; a selection (before training, after every epoch) reads the sums once."""

    def __init__(self, model: nn.Module, templates: Templates, reduction: float, clusters: Tensor,
                 first: Tensor, calibration: DataLoader) -> None:
        super().__init__(model, templates, reduction, ResetToZero())
        self.clusters, self.first, self.calibration = clusters, first, calibration
        self.count = int(clusters.max()) + 1 if len(clusters) else 0
        # per entry, its cluster's slot in the sums; the first-pruned share a spare last slot
        self.index = torch.where(first, self.count, clusters)
        self.batches, self.sums = 0, torch.zeros(self.count + 1)
        self.threshold: float | None = None  # the last selection's, on the normalised loss effect
        self.tied_share: float | None = None
        self.calibration_seconds = 0.0

    def on_train_start(self, trainer: Any, pl_module: Any = None, *_args) -> None:
        device = self.templates.scales[0].device
        self.sums, self.index = self.sums.to(device), self.index.to(device)
        if self.selection is None and pl_module is not None:  # the first selection's effect: the crops
            start = time.perf_counter()
            self._calibrate(pl_module, device)
            self.calibration_seconds += time.perf_counter() - start
        super().on_train_start(trainer)

    def _calibrate(self, pl_module: Any, device: torch.device) -> None:
        was_training = self.model.training
        self.model.eval()  # the crops must not move the BN statistics
        try:
            for batch in self.calibration:
                logits = self.model(batch["image"].to(device))
                loss = pl_module.loss(logits, pl_module._target(batch["mask"].to(device)))
                scales = list(self.templates.scales)
                grads = torch.autograd.grad(loss, scales, allow_unused=True)
                self.fold([torch.zeros_like(p) if g is None else g for g, p in zip(grads, scales, strict=True)])
        finally:
            self.model.train(was_training)

    def fold(self, grads: list[Tensor]) -> None:
        """Add one batch's (sum of each cluster's template gradients)^2, on their device."""
        flat = torch.cat(grads)
        self.sums += torch.zeros_like(self.sums).index_add_(0, self.index, flat).square()
        self.batches += 1

    def on_before_optimizer_step(self, *_args) -> None:
        scales = list(self.templates.scales)
        self.fold([p.grad if p.grad is not None else torch.zeros_like(p) for p in scales])
        for p in scales:  # no step: AdamW skips a parameter without a gradient, decay included
            p.grad = None

    def loss_effect(self) -> Tensor:
        """Per cluster, the mean squared summed template gradient since the last selection."""
        return (self.sums[: self.count] / max(self.batches, 1)).cpu()

    def choose(self) -> tuple[Tensor, Tensor, Tensor]:
        norms = filter_norms(self.model, self.templates)
        keep, score, by_score, self.threshold = cut_clusters(
            self.templates, self.clusters, self.loss_effect(), norms, self.first, self.reduction)
        self.tied_share = tied_share(torch.stack([score, norms], 1))  # tied on both keys of the cut
        self.sums, self.batches = torch.zeros_like(self.sums), 0
        return keep, score, by_score


class TcfpMethod(SfpMethod):
    """TCFP, seed thesis 002 (see the module's docstring for each step and its source).

    It decides on the normalised cluster effect, so its saliency gap is 1 when the cut
    splits a cluster. Like `FeatureMapMethod` it keeps `tied_share` (entries tied on effect
    and norm) and `calibration_seconds` as attributes: `run.py`'s record does not read them."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        # cosine distance between two filters' functions below which they share a cluster
        distance: float = Field(0.2, gt=0, le=2)
        # share of the MAC cut the L2 pruning inside clusters may take; soft pruning does the rest
        first_share: float = Field(0.5, ge=0, le=1)

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        self.callback: TcfpPruner | None = None
        self.tied_share: float | None = None
        self.calibration_seconds: float | None = None

    def sparsifier(self, ctx: PruneContext) -> TcfpPruner:
        start, model, templates = time.perf_counter(), ctx.model, ctx.templates
        device = next(model.parameters()).device
        readers = find_readers(model, templates, next(iter(ctx.calibration))["image"][:1].to(device))
        peaks = PeakFeatures()
        visit_feature_maps(model, readers, ctx.calibration, peaks.visit)
        parts, offset = {}, 0
        for g in templates.groups:  # cluster labels unique across groups
            parts[g.name] = function_clusters(*peaks.functions(g.name), self.options.distance) + offset
            offset = int(parts[g.name].max()) + 1
        clusters = templates.join(parts).long()
        first = first_pruning(templates, clusters, filter_norms(model, templates),
                              self.options.first_share * ctx.reduction)
        with torch.no_grad():  # removed for good: exactly what removal will do, from now on
            for scale, gone in zip(templates.scales, templates.split(first).values(), strict=True):
                scale[gone.to(scale.device)] = 0.0
        templates.requires_grad_(True)  # their gradients are the Taylor gates; never stepped
        self.calibration_seconds = time.perf_counter() - start
        self.callback = TcfpPruner(model, templates, ctx.reduction, clusters, first, ctx.calibration)
        return self.callback

    def keep(self, ctx: PruneContext) -> Tensor:
        keep = super().keep(ctx)
        if self.callback is not None:
            self.calibration_seconds = (self.calibration_seconds or 0.0) + self.callback.calibration_seconds
            self.tied_share = self.callback.tied_share
        return keep
