"""Pruning methods behind one interface, in Torch-Pruning's style.

Every method ends in the same place: a keep mask over the template entries (one per
prunable channel group index) that meets the MAC target, which `fold_and_remove` turns into
a smaller model. They differ in how they get there:

* one-shot criteria score the dense model's channels with a Torch-Pruning `Importance`
  (`magnitude`: group L2 norm of the weights; `slimming`: BatchNorm |γ|; `random`) and
  drop the lowest scores until the target holds;
* template methods train the feature templates for `prune.epochs` first: `hqs_l0` (the
  product's method, hqs_l0.py) or an `l1` / `l2` penalty on the templates, the baselines of
  the saliency-gap comparison. Their sparsifier is a Lightning callback, hooked after the
  optimiser step like Torch-Pruning's regularisers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch_pruning as tp
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.pruning.hqs_l0 import HqsL0, hard_threshold, lambda_for_target
from pipeline.pruning.templates import Templates

Z_STEPS = 20  # decisions per sparsification run: often enough to track s, rare enough to be cheap
SETTLE = 0.8  # after this share of the steps decisions freeze, so the pull can finish its work
MAX_SHRINK = 0.05  # l1/l2: λ·lr stays below this (5 % of a unit template per step), or they kill the model


def keep_by_score(templates: Templates, score: Tensor, macs_reduction: float) -> Tensor:
    """Keep the highest-scoring entries, dropping the lowest until the model's MACs fall by
    `macs_reduction`, within the templates' rules (`Templates.legal`)."""
    rank = torch.empty(len(score))  # ranks, not values: ties (e.g. BN γ all 1 at init) must not drop together
    rank[score.argsort(stable=True)] = torch.arange(1, len(score) + 1, dtype=rank.dtype)
    score = rank

    def legal(keep: Tensor) -> Tensor:
        return templates.legal(keep, score)

    ones = torch.ones_like(score)  # equal costs and μ = 2: an entry drops once λ reaches score²
    lam = lambda_for_target(score, ones, 2.0, lambda keep: templates.kept_macs(legal(keep)),
                            templates.budget(macs_reduction))
    return legal(hard_threshold(score, ones, lam, 2.0) != 0)


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


ONE_SHOT: dict[str, Callable[[], tp.importance.Importance]] = {
    "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "slimming": BNScaleImportance,
    "random": tp.importance.RandomImportance,
}


class HqsSparsifier(L.Callback):
    """HQS-L0 during training: the proximal pull after every optimiser step, a z-step
    (λ for the MAC target, exact hard threshold) every few steps until SETTLE."""

    def __init__(self, templates: Templates, macs_reduction: float, lr: float, final_stiffness: float) -> None:
        self.args = templates, macs_reduction, lr, final_stiffness
        self.hqs: HqsL0 | None = None

    def _start(self, steps: int) -> None:
        templates, macs_reduction, lr, final_stiffness = self.args
        self.hqs = HqsL0(templates, macs_reduction, steps, lr, final_stiffness=final_stiffness)
        self.every = max(1, steps // Z_STEPS)

    def on_train_start(self, trainer: L.Trainer, *_args) -> None:
        """The schedule spans the steps this run will take (Lightning knows them by now);
        a resumed run has its schedule from the checkpoint already (load_state_dict)."""
        if self.hqs is None:
            self._start(int(trainer.estimated_stepping_batches))

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: the schedule's position, λ, the Fisher metric, z."""
        h = self.hqs
        return {} if h is None else {"steps": h.steps, "step": h.step, "lam": h.lam, "fisher": h.fisher,
                                     "keep": h.keep, "z": h.z}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._start(state["steps"])
            for name in ("step", "lam", "fisher", "keep", "z"):
                setattr(self.hqs, name, state[name])

    def on_before_optimizer_step(self, trainer: L.Trainer, *_args) -> None:
        """The task gradient of the templates (the pull is not a gradient term) feeds the metric."""
        scales = self.hqs.templates.scales
        self.hqs.observe(torch.cat([p.grad if p.grad is not None else torch.zeros_like(p) for p in scales]))

    def on_train_batch_end(self, trainer: L.Trainer, *_args) -> None:
        self.hqs.proximal(self.hqs.lr)
        if self.hqs.step % self.every == 0 and self.hqs.progress < SETTLE:
            self.hqs.z_step()

    def keep(self) -> Tensor:
        """The last z-step's decision."""
        return self.hqs.keep


class PenaltySparsifier(L.Callback):
    """An L1 or L2 penalty λ·c_j·|s_j|^p on the templates (c_j the MAC cost, relative to the
    mean), applied as its own gradient step after the optimiser step, as the HQS pull is, so
    Adam's normalisation does not blunt either. λ is tuned while training: it grows while the
    entries with an effective scale below `zero`·median hold less than the MAC target, else shrinks.
    The L1 step is its proximal form (it stops at zero), the L2 step a plain decay."""

    def __init__(self, templates: Templates, macs_reduction: float, lr: float, p: int,
                 zero: float = 0.01) -> None:
        self.templates, self.p, self.lr, self.zero = templates, p, lr, zero
        self.macs_reduction = macs_reduction
        self.weight = templates.cost / templates.cost.mean()
        self.lam = 0.01 / lr  # λ·lr = 1 % of a unit template per step at first: a gentle start
        self.steps, self.step = 1, 0

    def on_train_start(self, trainer: L.Trainer, *_args) -> None:
        if not self.step:  # a resumed run keeps its schedule (load_state_dict)
            self.steps = int(trainer.estimated_stepping_batches)
        self.every = max(1, self.steps // Z_STEPS)

    def state_dict(self) -> dict[str, Any]:
        """λ and the schedule's position, for a resumed run."""
        return {"lam": self.lam, "step": self.step, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam, self.step, self.steps = state["lam"], state["step"], state["steps"]

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, *_args) -> None:
        for param, weight in zip(self.templates.scales, self.templates.split(self.weight).values(), strict=True):
            w = (self.lr * self.lam * weight.to(param.device)).clamp(max=0.5)
            if self.p == 1:  # L1's step stops at zero rather than cross it (soft threshold)
                param.copy_(param.sign() * (param.abs() - w).clamp_min(0))
            else:
                param.mul_(1 - w)
        self.step += 1
        if self.step % self.every == 0 and self.step < SETTLE * self.steps:
            grown = self.lam * (1.5 if self.removed_share() < self.macs_reduction else 1 / 1.5)
            self.lam = min(grown, MAX_SHRINK / self.lr)

    def removed_share(self) -> float:
        """Share of the dense MACs held by entries whose effective scale is below `zero` times
        the median: relative, so shrinking every template alike removes nothing."""
        t, effective = self.templates, self.templates.effective_scale()
        return (t.dense_modelled - t.kept_macs(effective >= self.zero * effective.median())) / t.dense_macs

    def keep(self) -> Tensor:
        """The MAC target met by dropping the smallest effective scales."""
        return keep_by_score(self.templates, self.templates.effective_scale(), self.macs_reduction)


TRAINED = {"hqs_l0", "l1", "l2"}


def check_method(name: str) -> str:
    """`name` if it is a known method, else an error listing the valid ones."""
    if name not in TRAINED | set(ONE_SHOT):
        raise PipelineError(f"prune method {name!r} is unknown; valid: {', '.join(sorted(TRAINED | set(ONE_SHOT)))}")
    return name


def create_sparsifier(name: str, templates: Templates, macs_reduction: float, lr: float,
                      final_stiffness: float, zero: float) -> L.Callback:
    """The training-time sparsifier of a template method."""
    if name == "hqs_l0":
        return HqsSparsifier(templates, macs_reduction, lr, final_stiffness)
    return PenaltySparsifier(templates, macs_reduction, lr, p=int(check_method(name)[1]), zero=zero)


def saliency_gap(effective: Tensor, keep: Tensor) -> float:
    """Smallest kept effective scale over the largest removed one: > 1 is a clean cut, and
    the larger, the less the removal decision hangs on noise."""
    if keep.all() or not keep.any():
        return float("inf")
    smallest_kept, largest_removed = float(effective[keep].min()), float(effective[~keep].max())
    if largest_removed == 0:  # zeros on both sides are a tie, not a cut
        return float("inf") if smallest_kept > 0 else 1.0
    return smallest_kept / largest_removed
