"""Loss registry over smp's losses; `a+b` names a weighted sum, e.g. `dice+bce`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

from pipeline.errors import PipelineError
from pipeline.labels import IGNORE_INDEX


def _bce(mode: str, ignore_index: int, **kw: Any) -> nn.Module:
    if mode == "binary":
        return smp_losses.SoftBCEWithLogitsLoss(ignore_index=ignore_index, **kw)
    return smp_losses.SoftCrossEntropyLoss(ignore_index=ignore_index, **kw)


# name -> factory(mode, ignore_index, **options); options come from train.loss_options[name]
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": _bce,
    "dice": lambda mode, ignore_index, **kw: smp_losses.DiceLoss(mode, ignore_index=ignore_index, **kw),
    "focal": lambda mode, ignore_index, **kw: smp_losses.FocalLoss(mode, ignore_index=ignore_index, **kw),
    # Tversky with beta > alpha weighs missed line pixels above false alarms: thin, rare class
    "tversky": lambda mode, ignore_index, **kw: smp_losses.TverskyLoss(
        mode, ignore_index=ignore_index, **{"alpha": 0.3, "beta": 0.7, **kw}
    ),
    "lovasz": lambda mode, ignore_index, **kw: smp_losses.LovaszLoss(mode, ignore_index=ignore_index, **kw),
}


class WeightedSum(nn.Module):
    """Sum of named losses with weights, e.g. Dice + focal."""

    def __init__(self, parts: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * loss(logits, target) for name, loss in self.parts.items())


def create_loss(name: str, options: dict[str, Any] | None = None, *, num_classes: int = 2,
                ignore_index: int = IGNORE_INDEX) -> nn.Module:
    """Build loss `name` (or `a+b+...`); options: {weights: {a: 1.0}, a: {kwargs of a}}."""
    options = dict(options or {})
    weights = options.pop("weights", {})
    mode = "binary" if num_classes == 2 else "multiclass"
    parts = {}
    for part in name.split("+"):
        if part not in LOSSES:
            raise PipelineError(f"train.loss: unknown loss {part!r}; valid: {', '.join(LOSSES)} (join with +)")
        try:
            parts[part] = LOSSES[part](mode, ignore_index, **options.get(part, {}))
        except TypeError as err:
            raise PipelineError(f"train.loss_options.{part}: {err}") from None
    unknown = set(options) - set(parts)
    if unknown:
        raise PipelineError(f"train.loss_options: {sorted(unknown)} name no loss in {name!r}")
    if len(parts) == 1 and not weights:
        return next(iter(parts.values()))
    return WeightedSum(parts, {part: float(weights.get(part, 1.0)) for part in parts})


class Distiller(nn.Module):
    """Logit distillation from a frozen dense model: the student matches the teacher's
    softened per-pixel probabilities (soft-target BCE for one logit, KL for several), scaled
    by T² as usual, over the non-ignored pixels."""

    def __init__(self, teacher: nn.Module, weight: float = 1.0, temperature: float = 1.0,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.temperature, self.ignore_index = weight, temperature, ignore_index

    def train(self, mode: bool = True) -> Distiller:
        """The teacher stays in eval mode whatever Lightning asks: its BN statistics are fixed."""
        return super().train(False)

    def forward(self, image: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher = self.teacher(image) / self.temperature
        student = student / self.temperature
        if student.shape[1] == 1:
            per_pixel = nn.functional.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher),
                                                                       reduction="none")
        else:
            per_pixel = nn.functional.kl_div(student.log_softmax(1), teacher.log_softmax(1), log_target=True,
                                             reduction="none").sum(1, keepdim=True)
        valid = (mask != self.ignore_index).unsqueeze(1)
        return self.weight * self.temperature**2 * per_pixel[valid].mean()
