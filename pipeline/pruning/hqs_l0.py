"""HQS-L0: choose channels to remove by half-quadratic splitting of an L0 MAC penalty.

The problem is  min_{W,s}  task(W, s) + λ Σ_j c_j [s_j ≠ 0],  s the feature templates (one
entry per prunable channel, `templates.py`) and c_j what entry j costs: its MACs, or its
predicted milliseconds on a device (`costs.py`; recomputed at each z-step). Half-quadratic
splitting adds an auxiliary copy z and a coupling term,

    task(W, s) + (μ/2)‖s − z‖² + λ Σ_j c_j [z_j ≠ 0],

and alternates:

(a) optimiser steps on W and s with z fixed, each followed by the proximal step of the
    coupling term, s ← (s + ημ·z)/(1 + ημ): an exact implicit step, stable for any ημ;
(b) the exact z-step, a hard threshold per entry: z_j = s_j if s_j² > 2λc_j/μ, else 0
    (keeping costs λc_j, dropping costs (μ/2)s_j²; in the metric below, F_j·s_j²);
(c) continuation: μ grows geometrically, so s is pulled ever harder onto z and the entries
    with z = 0 reach 0 before they are removed.

Users set physical quantities: the fraction of dense MACs (or of the predicted latency) to
remove, or a latency in ms, the number of sparsification steps and the final stiffness ημ.
λ is no knob: each z-step finds it by bisection so that the kept entries meet the target.

The metric of the coupling. With the plain ‖s − z‖², every template starts at 1 and the
z-step ranks entries by cost alone: on a U-Net it empties the widest, highest-resolution
layers first, exactly the ones thin wires need (measured: synthetic test IoU 0.13 after
fine-tuning, against 0.39 for magnitude pruning). So the coupling is measured in the task's
own metric, (μ/2)·Σ_j F_j (s_j − z_j)² with F_j = E[(∂task/∂s_j)²] (the empirical Fisher,
an EMA over the training steps, `observe`), normalised to mean 1. The z-step becomes
z_j = s_j if F_j·s_j² > 2λc_j/μ: keep a channel when the loss it would cost (≈ ½F_j s_j²)
exceeds its MAC price λc_j. Before any gradient is seen the metric is the effective scale
below. The proximal pull stays isotropic, so dropped entries of any F reach 0.

Gauge: a BN's γ (or a site conv's weights) can take over any scale s gives up, so a raw
|s| threshold could be gamed. F_j·s_j² is unchanged by such rescaling (s → s/a scales
∂task/∂s by a), and so is the fallback, the *effective* scale e_j = |s_j|·(neighbour
scale) (`Templates.effective_scale`); z keeps the value of s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pipeline.pruning.templates import Templates


def _drop_at(score: Tensor, cost: Tensor, mu: float) -> Tensor:
    """The λ above which each entry is dropped: μ·e²/(2c) (so keep ⇔ e² > 2λc/μ)."""
    return mu * score.double().pow(2) / (2 * cost.double())


def hard_threshold(s: Tensor, cost: Tensor, lam: float, mu: float, scale: Tensor | None = None) -> Tensor:
    """The exact z-step: z_j = s_j where (scale_j·s_j)² > 2λc_j/μ, else 0 (scale defaults to 1)."""
    score = s.abs() if scale is None else s.abs() * scale
    return torch.where(_drop_at(score, cost, mu) > lam, s, torch.zeros_like(s))


def proximal(s: Tensor, z: Tensor, stiffness: float) -> Tensor:
    """The implicit step on (μ/2)‖s − z‖² with stiffness ημ: (s + ημ·z)/(1 + ημ)."""
    return (s + stiffness * z) / (1 + stiffness)


def geometric(progress: float, start: float, final: float) -> float:
    """Geometric interpolation from `start` (progress 0) to `final` (progress ≥ 1)."""
    return start * (final / start) ** min(max(progress, 0.0), 1.0)


def lambda_for_target(
    score: Tensor, cost: Tensor, mu: float, kept_macs: Callable[[Tensor], float], budget: float
) -> float:
    """The smallest λ whose keep set (score² > 2λc/μ) has kept_macs(keep) ≤ budget.

    Bisection over the λ at which each entry drops (kept MACs only fall as λ grows), so the
    result is exact: one entry fewer dropped would exceed the budget. If even dropping every
    entry misses the budget, the largest such λ (keep set empty, or what kept_macs adds).
    """
    drop_at = _drop_at(score, cost, mu)
    candidates = torch.unique(torch.cat([drop_at.new_zeros(1), drop_at[torch.isfinite(drop_at)]])).tolist()

    def fits(lam: float) -> bool:
        return kept_macs(drop_at > lam) <= budget

    if fits(candidates[0]):
        return candidates[0]  # the budget holds with every entry kept
    if not fits(candidates[-1]):
        return candidates[-1]  # out of reach: drop every entry that can go
    lo, hi = 0, len(candidates) - 1
    while hi - lo > 1:  # invariant: fits(candidates[hi]), not fits(candidates[lo])
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(candidates[mid]) else (mid, hi)
    return candidates[hi]


def keep_by_score(templates: Templates, score: Tensor, reduction: float) -> Tensor:
    """Keep the highest-scoring entries, dropping the lowest until the model's cost (MACs, or
    predicted latency: `templates.cost_model`) falls by `reduction`, within the templates'
    rules (`Templates.legal`)."""
    return decide_by_score(templates, score, reduction)[0]


def decide_by_score(templates: Templates, score: Tensor, reduction: float) -> tuple[Tensor, Tensor]:
    """`keep_by_score`'s keep mask, and the entries the score itself kept (before the rules,
    which may keep an entry the score would drop, e.g. a layer's last channel)."""
    rank = torch.empty(len(score))  # ranks, not values: ties (e.g. BN γ all 1 at init) must not drop together
    rank[score.argsort(stable=True)] = torch.arange(1, len(score) + 1, dtype=rank.dtype)
    score = rank

    def legal(keep: Tensor) -> Tensor:
        return templates.legal(keep, score)

    ones = torch.ones_like(score)  # equal costs and μ = 2: an entry drops once λ reaches score²
    costs = templates.cost_model
    lam = lambda_for_target(score, ones, 2.0, lambda keep: costs.kept(legal(keep)), costs.budget(reduction))
    by_score = hard_threshold(score, ones, lam, 2.0) != 0
    return legal(by_score), by_score


class HqsL0:
    """The HQS-L0 regulariser over a model's feature templates, in Torch-Pruning's
    regulariser style: the training loop calls it, it never calls the loop.

    Per optimiser step: `optimizer.step()` then `hqs.proximal(lr)`; every few steps (or
    every epoch) `hqs.z_step()`. At the end, `keep_masks()` goes to `fold_and_remove`.
    Give the templates no weight decay: their size is what the z-step judges.

    Device: the decisions (z-steps) run on the CPU, where the bisection reads values anyway;
    what every step touches (the Fisher estimate, z per group) stays on the templates' device,
    so a training step never waits for the host.
    """

    def __init__(
        self,
        templates: Templates,
        reduction: float,
        steps: int,
        lr: float,
        final_stiffness: float = 1.0,
        start_stiffness: float = 1e-3,
        use_fisher: bool = True,
    ):
        if not 0 <= reduction < 1:
            raise ValueError(f"reduction must be in [0, 1), got {reduction}")
        self.templates, self.steps, self.lr = templates, max(steps, 1), lr
        self.start_stiffness, self.final_stiffness = start_stiffness, final_stiffness
        self.budget = templates.cost_model.budget(reduction)
        self.step, self.lam = 0, 0.0
        self.cost: Tensor | None = None  # c_j of the last z-step (a latency cost moves with the widths)
        # the coupling's metric, E[(∂task/∂s)²] per entry, once the training loop has measured
        # it (`observe`); until then the effective scale (|s|·neighbour scale) is the metric,
        # and always without `use_fisher` (the seed thesis' plain HQS-L0)
        self.use_fisher = use_fisher
        self.fisher: Tensor | None = None
        self.score: Tensor | None = None  # the last z-step's score, |s|·metric: what it decided on
        self.by_score: Tensor | None = None  # the entries that score kept, before the templates' rules
        self.keep = torch.ones(templates.entries, dtype=torch.bool)
        self.z = templates.flat().detach().cpu()
        self.z_step()

    @property
    def z(self) -> Tensor:
        """The auxiliary copy of the templates (CPU), set by the z-step."""
        return self._z

    @z.setter
    def z(self, value: Tensor) -> None:
        """Set z and copy it, per group, to the templates' device once (a decision point)."""
        self._z = value
        parts = self.templates.split(value).values()
        self._z_parts = [z.to(p.device) for p, z in zip(self.templates.scales, parts, strict=True)]

    @property
    def progress(self) -> float:
        """Fraction of the sparsification steps done (1 after the last)."""
        return min(self.step / self.steps, 1.0)

    def stiffness(self, progress: float | None = None) -> float:
        """ημ at `progress` (default: now), geometric from the start to the final stiffness."""
        return geometric(self.progress if progress is None else progress, self.start_stiffness, self.final_stiffness)

    @property
    def mu(self) -> float:
        """μ now: the stiffness at the base step size."""
        return self.stiffness() / self.lr

    @torch.no_grad()
    def z_step(self) -> float:
        """Find λ for the target at the current μ, then set z by the exact hard threshold
        on the scales in the coupling's metric; returns λ."""
        t = self.templates
        s = t.flat().detach().cpu()  # bookkeeping stays on the CPU
        if self.fisher is None or not self.use_fisher:
            metric = t.neighbour_scale()
        else:
            fisher = self.fisher.cpu()
            metric = (fisher / fisher.mean().clamp_min(1e-30)).sqrt()
        score = self.score = s.abs() * metric

        def legal(keep: Tensor) -> Tensor:  # the templates' rules: none vanishes, rounded, ...
            return t.legal(keep, score)

        cost = self.cost = t.cost_model.per_entry(self.keep)  # at the widths the last z-step left
        self.lam = lambda_for_target(score, cost, self.mu, lambda keep: t.cost_model.kept(legal(keep)), self.budget)
        self.by_score = hard_threshold(s, cost, self.lam, self.mu, metric) != 0  # before the rules
        self.keep = legal(self.by_score)
        self.z = torch.where(self.keep, s, torch.zeros_like(s))
        return self.lam

    @torch.no_grad()
    def observe(self, grad: Tensor, decay: float = 0.9) -> None:
        """Fold one step's task gradient w.r.t. the templates into the Fisher estimate (none
        without `use_fisher`)."""
        if not self.use_fisher:
            return
        sq = grad.detach().double().pow(2)  # on the gradient's device: no sync per step
        if self.fisher is not None and self.fisher.device != sq.device:  # a resumed run loaded it elsewhere
            self.fisher = self.fisher.to(sq.device)
        self.fisher = sq if self.fisher is None else decay * self.fisher + (1 - decay) * sq

    @torch.no_grad()
    def proximal(self, step_size: float) -> None:
        """After optimizer.step(): pull s towards z with stiffness step_size·μ; one step done."""
        stiffness = step_size * self.mu
        if self._z_parts and self._z_parts[0].device != self.templates.scales[0].device:  # templates moved
            self.z = self._z
        for param, z in zip(self.templates.scales, self._z_parts, strict=True):
            param.copy_(proximal(param, z, stiffness))
        self.step += 1

    def keep_masks(self) -> dict[str, Tensor]:
        """{group: bool per channel entry} from the last z-step: False means remove."""
        return {name: mask.clone() for name, mask in self.templates.split(self.keep).items()}

    def predicted_macs(self) -> float:
        """MACs of the whole model once the z = 0 entries are removed (modelled)."""
        t = self.templates
        return t.dense_macs - (t.dense_modelled - t.kept_macs(self.keep))
