"""The registered pruning methods (`registry.py` names them), in Torch-Pruning's style.

Every method ends in the same place: a keep mask over the template entries (one per
prunable channel group index) that meets the MAC target, which `fold_and_remove` turns into
a smaller model, and the score it decided on (`Method.decision_scores`, for the saliency
gap). They differ in how they get there:

* one-shot criteria score the dense model's channels with a Torch-Pruning `Importance`
  (`magnitude`: group L2 norm of the weights; `slimming`: BatchNorm |γ|; `random`) and
  drop the lowest scores until the target holds (`ImportanceMethod`);
* sparse-training baselines train `prune.epochs` with a Torch-Pruning regulariser first
  (`bn_l1`: network slimming's L1 on BN γ; `group_l2`: DepGraph's group lasso;
  regularizers.py), then rank like the one-shot criteria (`SparseTrainingMethod`);
* HQS-L0 trains the feature templates for `prune.epochs` (`hqs_l0`, the product's method,
  hqs_l0.py; `hqs_l0_plain`, the seed thesis' version without the Fisher metric). Its
  sparsifier (sparsifiers.py) is a Lightning callback hooked around the optimiser step.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from pipeline.pruning.hqs_l0 import decide_by_score, keep_by_score
from pipeline.pruning.method import Method, PruneContext
from pipeline.pruning.regularizers import Regularizer, build_pruner
from pipeline.pruning.sparsifiers import HqsSparsifier
from pipeline.pruning.templates import Templates

__all__ = ["HqsSparsifier", "keep_by_score"]  # where the stages and tests found them


@torch.no_grad()
def importance_scores(model: nn.Module, templates: Templates, importance: tp.importance.Importance) -> Tensor:
    """Per template entry, Torch-Pruning's importance of that channel over its whole group."""
    dg, parts = templates.dg, []
    for g in templates.groups:
        root = model.get_submodule(g.name)
        group = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, list(range(g.size)))
        parts.append(importance(group).detach().float().cpu())
    return torch.cat(parts)


class BNScaleImportance(tp.importance.Importance):
    """Network slimming's criterion: per root channel, the mean |γ| of the group's BatchNorms
    (+inf where none: slimming cannot judge those channels, so it keeps them).

    Torch-Pruning's BNScaleImportance sizes its sum by the first BN of the group and fails
    where that BN holds only part of a concatenation (DeepLabV3+ on MobileNet)."""

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> Tensor:
        size = len(group[0].root_idxs)
        total, count = torch.zeros(size), torch.zeros(size)
        for item in group:
            layer = item.dep.target.module
            if isinstance(layer, nn.BatchNorm2d) and layer.affine:
                root = torch.tensor(item.root_idxs)
                total.index_add_(0, root, layer.weight.detach().abs()[item.idxs].float().cpu())
                count.index_add_(0, root, torch.ones(len(root)))
        return torch.where(count > 0, total / count.clamp_min(1), torch.inf)


# --- one-shot -----------------------------------------------------------------------------


class ImportanceMethod(Method):
    """One shot: score every entry with a Torch-Pruning importance, drop the lowest."""

    def importance(self, ctx: PruneContext) -> tp.importance.Importance:
        """The criterion, `__call__(group) -> one score per channel of the group`."""
        raise NotImplementedError

    def keep(self, ctx: PruneContext) -> Tensor:
        self.decision_scores = importance_scores(ctx.model, ctx.templates, self.importance(ctx))
        keep, self.decided_by_score = decide_by_score(ctx.templates, self.decision_scores, ctx.reduction)
        return keep


class MagnitudeMethod(ImportanceMethod):
    """Group L2 norm of the weights."""

    def importance(self, ctx: PruneContext) -> tp.importance.Importance:
        return tp.importance.GroupMagnitudeImportance(p=2)


class SlimmingMethod(ImportanceMethod):
    """Network slimming: BatchNorm |γ|."""

    def importance(self, ctx: PruneContext) -> tp.importance.Importance:
        return BNScaleImportance()


class RandomMethod(ImportanceMethod):
    """Random scores: the floor every criterion must beat."""

    def importance(self, ctx: PruneContext) -> tp.importance.Importance:
        return tp.importance.RandomImportance()


# --- sparse training ------------------------------------------------------------------------


class SparseTrainingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reg: float = Field(1e-4, gt=0)  # the regulariser's coefficient (Torch-Pruning's `reg`)


class SparseTrainingMethod(ImportanceMethod):
    """Trains `prune.epochs` with a Torch-Pruning regulariser (`regularize(model)` after
    backward, before each optimiser step), then ranks by `importance` and cuts at the target.
    The templates stay at 1 (frozen): trained, they would take over the scale the
    regulariser takes from the weights, and nothing would be sparsified."""

    Options = SparseTrainingOptions
    trains = True
    regularizer: ClassVar[str]  # the kind `regularizers.build_pruner` builds

    def sparsifier(self, ctx: PruneContext) -> Regularizer:
        ctx.templates.requires_grad_(False)
        return Regularizer(build_pruner(self.regularizer, ctx.model, ctx.templates, self.options.reg), ctx.model)


class BNL1Method(SparseTrainingMethod):
    """Network slimming as published: L1 on BN γ while training, then BN |γ| ranks."""

    regularizer = "bn_l1"

    def importance(self, ctx: PruneContext) -> tp.importance.Importance:
        return BNScaleImportance()


class GroupL2Method(SparseTrainingMethod):
    """DepGraph's group lasso while training, then the group L2 norm ranks."""

    regularizer = "group_l2"

    def importance(self, ctx: PruneContext) -> tp.importance.Importance:
        return tp.importance.GroupMagnitudeImportance(p=2)


# --- template training ----------------------------------------------------------------------


class HqsL0Method(Method):
    """HQS-L0: an exact L0 MAC penalty by half-quadratic splitting (hqs_l0.py), with the
    Fisher metric in the z-step; it decides on the last z-step's score."""

    recalibrate = False  # its pull drives the dropped templates to (nearly) 0 while training

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        final_stiffness: float = Field(10.0, gt=0)  # ημ at the end: how hard s is pulled onto z

    trains = True
    use_fisher: ClassVar[bool] = True

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        self.callback: HqsSparsifier | None = None

    def sparsifier(self, ctx: PruneContext) -> HqsSparsifier:
        self.callback = HqsSparsifier(ctx.templates, ctx.reduction, ctx.config.lr, self.options.final_stiffness,
                                      use_fisher=self.use_fisher)
        return self.callback

    def keep(self, ctx: PruneContext) -> Tensor:
        if self.callback is None:
            raise RuntimeError(f"{type(self).__name__}: train with its sparsifier before asking what to keep")
        hqs = self.callback.hqs
        # the z-step keeps an entry when score² > 2λc/μ: score/√c is the quantity it thresholds
        self.decision_scores = hqs.score / hqs.cost.sqrt()
        self.decided_by_score = hqs.by_score
        return self.callback.keep()


class HqsL0PlainMethod(HqsL0Method):
    """HQS-L0 as the seed thesis has it: the z-step's metric is the effective scale, no Fisher."""

    use_fisher = False


def saliency_gap(scores: Tensor, keep: Tensor, by_score: Tensor | None = None) -> float:
    """Smallest kept score over the largest removed one, on the quantity the method's decision
    thresholded (`Method.decision_scores`): > 1 is a clean cut, and the larger, the less the
    removal decision hangs on noise. Entries the templates' rules kept although their score
    would drop them (a layer's last channel, `round_to`, `max_layer_pruning`; not in
    `by_score`) were not decided by the score and are left out of the kept side."""
    if by_score is not None and (keep & by_score).any():
        keep_scored = keep & by_score
        if (~keep).any():
            return saliency_gap(scores[keep_scored | ~keep], keep[keep_scored | ~keep])
    if keep.all() or not keep.any():
        return float("inf")
    smallest_kept, largest_removed = float(scores[keep].min()), float(scores[~keep].max())
    if largest_removed == 0:  # zeros on both sides are a tie, not a cut
        return float("inf") if smallest_kept > 0 else 1.0
    return smallest_kept / largest_removed


def tied_share(scores: Tensor) -> float:
    """Share of entries whose decision score equals another entry's exactly: rank-based
    criteria (hrank's integer ranks) tie often on small calibration crops, and a tie is
    broken by entry order, not by the criterion."""
    if scores.numel() == 0:
        return 0.0
    _, counts = torch.unique(scores.detach().flatten(), return_counts=True)
    return float(counts[counts > 1].sum()) / scores.numel()
