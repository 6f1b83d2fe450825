"""The training-time sparsifier of HQS-L0: a Lightning callback hooked around the optimiser
step, like Torch-Pruning's regularisers. Per step it only queues work on the model's device;
it reads values back (a host-device sync) only where it decides: at a z-step, every
`steps // Z_STEPS` steps.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from pipeline.pruning.hqs_l0 import HqsL0
from pipeline.pruning.templates import Templates

Z_STEPS = 20  # decisions per sparsification run: often enough to track s, rare enough to be cheap
SETTLE = 0.8  # after this share of the steps decisions freeze, so the pull can finish its work


class HqsSparsifier(L.Callback):
    """HQS-L0 during training: the proximal pull after every optimiser step, a z-step
    (λ for the MAC target, exact hard threshold) every few steps until SETTLE. `use_fisher`
    False: the seed thesis' plain metric (the effective scale), no gradient is observed."""

    def __init__(self, templates: Templates, reduction: float, lr: float, final_stiffness: float,
                 use_fisher: bool = True) -> None:
        self.args = templates, reduction, lr, final_stiffness
        self.use_fisher = use_fisher
        self.hqs: HqsL0 | None = None

    def _start(self, steps: int) -> None:
        templates, reduction, lr, final_stiffness = self.args
        self.hqs = HqsL0(templates, reduction, steps, lr, final_stiffness=final_stiffness,
                         use_fisher=self.use_fisher)
        self.every = max(1, steps // Z_STEPS)

    def on_train_start(self, trainer: L.Trainer, *_args) -> None:
        """The schedule spans the steps this run will take (Lightning knows them by now);
        a resumed run has its schedule from the checkpoint already (load_state_dict)."""
        if self.hqs is None:
            self._start(int(trainer.estimated_stepping_batches))

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: the schedule's position, λ, the Fisher metric, z, and the
        score z was decided on with the entries that score kept."""
        h = self.hqs
        return {} if h is None else {"steps": h.steps, "step": h.step, "lam": h.lam, "fisher": h.fisher,
                                     "keep": h.keep, "z": h.z, "score": h.score,
                                     "by_score": h.by_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._start(state["steps"])
            for name in ("step", "lam", "fisher", "keep", "z"):
                setattr(self.hqs, name, state[name])
            for name in ("score", "by_score"):  # absent from checkpoints written before they were kept
                setattr(self.hqs, name, state.get(name))

    def on_before_optimizer_step(self, trainer: L.Trainer, *_args) -> None:
        """The task gradient of the templates (the pull is not a gradient term) feeds the metric."""
        if not self.use_fisher:
            return
        scales = self.hqs.templates.scales
        self.hqs.observe(torch.cat([p.grad if p.grad is not None else torch.zeros_like(p) for p in scales]))

    def on_train_batch_end(self, trainer: L.Trainer, *_args) -> None:
        self.hqs.proximal(self.hqs.lr)
        if self.hqs.step % self.every == 0 and self.hqs.progress < SETTLE:
            self.hqs.z_step()

    def keep(self) -> Tensor:
        """The last z-step's decision."""
        return self.hqs.keep
