"""The feature maps of every prunable channel on the calibration crops, for the data-driven
one-shot criteria (HRank, CHIP and the seed theses' variants), and the Method they share.

Which map a channel group stands for: the input its channels give to the last layer that
reads them in a forward pass (a conv whose input channels are in the group), so the map is
what the channels carry on, after BatchNorm, ReLU and any residual add. For a conv-BN-ReLU
layer that is its post-ReLU output, where HRank and CHIP take theirs; for a residual stream
(a ResNet stage: one group for all its blocks) it is the stage's output after the last add
and ReLU, read where the Unet's decoder takes it as a skip (HRank reads ResNets after the
add too). A group that no plain conv reads (only depthwise convs) falls back to its root
conv's output. The templates multiply these maps; one-shot methods run with all of them at
1, so the maps are the dense model's.

Memory stays bounded: the crops go through the model batch by batch (eval mode, no
gradients), and each hook hands one group's maps of one batch to the method's `visit`,
which folds them into per-channel statistics; no map is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from pipeline.pruning.allocation import keep_normalised
from pipeline.pruning.method import Method, PruneContext
from pipeline.pruning.templates import Group, Templates

Visit = Callable[[Group, Tensor], None]  # (group, maps (batch, group size, h, w) in entry order)


@dataclass
class Reader:
    """Where a group's maps are read: the input (or, `as_input` False, the output) of `layer`,
    channels `channels` of it, listed in the group's entry order."""

    group: Group
    layer: str
    channels: Tensor
    as_input: bool


def _plain_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == 1


def _in_entry_order(idx: Tensor, root: Tensor, size: int, where: str) -> Tensor:
    """`idx` reordered so that position e holds the channel carrying entry e."""
    if not torch.equal(root.sort().values, torch.arange(size)):
        raise ValueError(f"{where} does not carry every entry of its group once")
    return idx[root.argsort()]


@torch.no_grad()
def find_readers(model: nn.Module, templates: Templates, example: Tensor) -> list[Reader]:
    """Per group, the last plain conv reading its channels in a forward pass of `example`
    (found by running it once), else its root conv's output."""
    was_training, calls = model.training, []
    names = {
        m.name
        for g in templates.groups
        for m in g.members
        if m.dim == "in" and _plain_conv(model.get_submodule(m.name))
    }
    hooks = [model.get_submodule(n).register_forward_pre_hook(lambda *_a, n=n: calls.append(n)) for n in names]
    model.eval()
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    order = {name: i for i, name in enumerate(calls)}  # a layer called twice counts at its last call
    readers = []
    for g in templates.groups:
        ins = [m for m in g.members if m.dim == "in" and m.name in order]
        if ins:
            last = max(ins, key=lambda m: order[m.name])
            readers.append(Reader(g, last.name, _in_entry_order(last.idx, last.root, g.size, last.name), True))
        else:
            root = next(m for m in g.members if m.name == g.name and m.dim == "out")
            readers.append(Reader(g, g.name, _in_entry_order(root.idx, root.root, g.size, g.name), False))
    return readers


@torch.no_grad()
def visit_feature_maps(model: nn.Module, readers: list[Reader], batches: Iterable[dict], visit: Visit) -> int:
    """Run `batches` through `model` (eval mode, no gradients; its mode is restored) and hand
    every group's maps to `visit`, batch by batch. Returns the number of images seen."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()

    def hook(reader: Reader):
        def read(_module: nn.Module, inputs: tuple, output: Tensor | None = None) -> None:
            maps = inputs[0] if reader.as_input else output
            visit(reader.group, maps[:, reader.channels.to(maps.device)].float())

        if reader.as_input:
            return model.get_submodule(reader.layer).register_forward_pre_hook(read)
        return model.get_submodule(reader.layer).register_forward_hook(read)

    handles, images = [hook(r) for r in readers], 0
    try:
        for batch in batches:
            model(batch["image"].to(device))
            images += len(batch["image"])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return images


def tied_share(scores: Tensor) -> float:
    """The share of entries whose score equals another entry's: the cut between tied entries
    is decided by their order, not by the criterion. `scores` holds one score per entry, or
    (2-D) one row of keys per entry, tied when every key is equal (tcfp: effect and norm)."""
    if not len(scores):
        return 0.0
    _, inverse, counts = torch.unique(scores, dim=0, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).float().mean())


class FeatureMapMethod(Method):
    """One shot from feature maps: `scores` reads the calibration crops and returns a raw score
    per template entry; the criteria were published with per-layer pruning rates, so the
    scores are normalised by each group's mean and cut globally (`allocation.keep_normalised`).

    Beyond `Method`'s record it keeps `tied_share` (share of tied decision scores) and
    `calibration_seconds` (time spent scoring) as attributes: the prune record's fields are
    fixed by `run.py`, which does not read them."""

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        self.tied_share: float | None = None
        self.calibration_seconds: float | None = None

    def scores(self, ctx: PruneContext, readers: list[Reader]) -> Tensor:
        """Per template entry, the criterion's raw score (higher: keep)."""
        raise NotImplementedError

    def keep(self, ctx: PruneContext) -> Tensor:
        start = time.perf_counter()
        example = next(iter(ctx.calibration))["image"][:1]
        readers = find_readers(ctx.model, ctx.templates, example.to(next(ctx.model.parameters()).device))
        raw = self.scores(ctx, readers).detach().float().cpu()
        self.calibration_seconds = time.perf_counter() - start
        keep, self.decision_scores, self.decided_by_score = keep_normalised(ctx.templates, raw, ctx.reduction)
        self.tied_share = tied_share(self.decision_scores)
        return keep


def per_entry(templates: Templates, per_group: dict[str, Tensor]) -> Tensor:
    """{group name: its scores} as one flat per-entry tensor on the CPU."""
    return templates.join({name: t.detach().float().cpu() for name, t in per_group.items()})
