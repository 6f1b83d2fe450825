"""The registered pruning methods (`registry.py` names them), in Torch-Pruning's style.

Every method ends in the same place: a keep mask over the template entries (one per
prunable channel group index) that meets the MAC target, which `fold_and_remove` turns into
a smaller model. They differ in how they get there:

* one-shot criteria score the dense model's channels with a Torch-Pruning `Importance`
  (`magnitude`: group L2 norm of the weights; `slimming`: BatchNorm |γ|; `random`) and
  drop the lowest scores until the target holds (`ImportanceMethod`);
* template methods train the feature templates for `prune.epochs` first: `hqs_l0` (the
  product's method, hqs_l0.py) or an `l1` / `l2` penalty on the templates, the baselines of
  the saliency-gap comparison. Their sparsifier (sparsifiers.py) is a Lightning callback,
  hooked after the optimiser step like Torch-Pruning's regularisers.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from pipeline.pruning.hqs_l0 import keep_by_score
from pipeline.pruning.method import Method, PruneContext
from pipeline.pruning.sparsifiers import HqsSparsifier, PenaltySparsifier
from pipeline.pruning.templates import Templates

__all__ = ["HqsSparsifier", "PenaltySparsifier", "keep_by_score"]  # where the stages and tests found them


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
        scores = importance_scores(ctx.model, ctx.templates, self.importance(ctx))
        return keep_by_score(ctx.templates, scores, ctx.macs_reduction)


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


# --- template training ----------------------------------------------------------------------


class TemplateMethod(Method):
    """Trains the templates with a sparsifier for `prune.epochs`, then asks it to decide."""

    trains = True

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        self.callback: HqsSparsifier | PenaltySparsifier | None = None

    def create(self, ctx: PruneContext) -> HqsSparsifier | PenaltySparsifier:
        raise NotImplementedError

    def sparsifier(self, ctx: PruneContext) -> HqsSparsifier | PenaltySparsifier:
        self.callback = self.create(ctx)
        return self.callback

    def keep(self, ctx: PruneContext) -> Tensor:
        if self.callback is None:
            raise RuntimeError(f"{type(self).__name__}: train with its sparsifier before asking what to keep")
        return self.callback.keep()


class HqsL0Method(TemplateMethod):
    """HQS-L0: an exact L0 MAC penalty by half-quadratic splitting (hqs_l0.py)."""

    recalibrate = False  # its pull drives the dropped templates to (nearly) 0 while training

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        final_stiffness: float = Field(10.0, gt=0)  # ημ at the end: how hard s is pulled onto z

    def create(self, ctx: PruneContext) -> HqsSparsifier:
        return HqsSparsifier(ctx.templates, ctx.macs_reduction, ctx.config.lr, self.options.final_stiffness)


class PenaltyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zero: float = Field(0.01, gt=0, lt=1)  # effective scale (× the median) counted as removed when tuning λ


class L1Method(TemplateMethod):
    """An L1 penalty on the templates (proximal, stops at zero)."""

    Options = PenaltyOptions
    p: ClassVar[int] = 1

    def create(self, ctx: PruneContext) -> PenaltySparsifier:
        return PenaltySparsifier(ctx.templates, ctx.macs_reduction, ctx.config.lr, p=self.p, zero=self.options.zero)


class L2Method(L1Method):
    """An L2 penalty on the templates (a decay)."""

    p = 2


def saliency_gap(effective: Tensor, keep: Tensor) -> float:
    """Smallest kept effective scale over the largest removed one: > 1 is a clean cut, and
    the larger, the less the removal decision hangs on noise."""
    if keep.all() or not keep.any():
        return float("inf")
    smallest_kept, largest_removed = float(effective[keep].min()), float(effective[~keep].max())
    if largest_removed == 0:  # zeros on both sides are a tie, not a cut
        return float("inf") if smallest_kept > 0 else 1.0
    return smallest_kept / largest_removed
