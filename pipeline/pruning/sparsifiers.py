"""The training-time sparsifiers of the template methods: Lightning callbacks hooked after
the optimiser step, like Torch-Pruning's regularisers. Per step they only queue work on the
model's device; they read values back (a host-device sync) only where they decide: at a
z-step or a penalty update, every `steps // Z_STEPS` steps.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from pipeline.pruning.hqs_l0 import HqsL0, keep_by_score
from pipeline.pruning.templates import Templates

Z_STEPS = 20  # decisions per sparsification run: often enough to track s, rare enough to be cheap
SETTLE = 0.8  # after this share of the steps decisions freeze, so the pull can finish its work
MAX_SHRINK = 0.05  # l1/l2: λ·lr stays below this (5 % of a unit template per step), or they kill the model


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
        self._weights: list[Tensor] | None = None  # self.weight per group on the templates' device
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
        if self._weights is None:  # once: a copy to the device every step would wait for the host
            self._weights = [w.to(p.device) for p, w in zip(self.templates.scales,
                                                             self.templates.split(self.weight).values(), strict=True)]
        for param, weight in zip(self.templates.scales, self._weights, strict=True):
            w = (self.lr * self.lam * weight).clamp(max=0.5)
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
