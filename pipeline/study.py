"""A study trains named variants with one budget and picks one by a written-down rule.

baseline varies the model, augment the policy, loss the loss; the code is the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.artifact import load_model, save_model
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.epoch_progress import epoch_lines
from pipeline.measure import macs_and_params
from pipeline.resume import ResumeStore
from pipeline.selection import SCORE
from pipeline.tolerance import cheapest_within
from pipeline.train import FitResult, describe, fit


@dataclass
class Variant:
    """One thing to try: a name and the model/training config it means."""

    name: str
    model: ModelCfg
    train: TrainCfg
    init: nn.Module | None = None  # start from these weights (a copy), else from scratch


def run_variant(variant: Variant, trainer: TrainerCfg, data: Path, logs: Path, seed: int,
                num_classes: int, cost_size: int, resume: ResumeStore | None = None
                ) -> tuple[FitResult, dict[str, Any]] | None:
    """Train one variant; return the fit and its row: accuracy and cost figures.

    None on DDP ranks other than 0: they train alongside rank 0, which measures and writes.
    """
    start = copy.deepcopy(variant.init) if variant.init is not None else None
    result = fit(variant.model, variant.train, trainer, data, logs / variant.name, seed, num_classes, model=start,
                 callbacks=epoch_lines(trainer, variant.name), resume=resume)
    if result is None:
        return None
    macs, params = macs_and_params(result.module.model, cost_size)
    row = {
        **result.metrics,
        "gmacs": macs / 1e9,
        "mparams": params / 1e6,
        "threshold": result.threshold,
        "network": variant.model.model_dump(),  # lets the report time this architecture later
    }
    return result, row


def pick(rows: dict[str, dict[str, float]], tolerance: float) -> str:
    """Highest SCORE (val IoU at the tuned threshold), but among variants within `tolerance`
    of it the fewest MACs wins: pipeline.tolerance.cheapest_within, the pick stage's rule, with
    the best variant as the reference.

    Uses only deterministic figures; equal MACs go to the higher SCORE, then to the name, so
    the choice is reproducible.
    """
    return cheapest_within(rows, max(row[SCORE] for row in rows.values()), tolerance)


RULE = (f"highest {SCORE} (val IoU at the F1-optimal threshold); among variants within iou_tolerance "
        "of it, the fewest GMACs (latency is measured by the report, never used: it is noisy)")


def run_study(variants: list[Variant], trainer: TrainerCfg, data: Path, logs: Path, seed: int,
              num_classes: int, cost_size: int, tolerance: float, out: Path, resume: ResumeStore | None = None
              ) -> dict[str, Any] | None:
    """Train every variant, save the winner to `out`, return the decision record.

    Under DDP every rank trains every variant, but only global rank 0 saves and gets the
    record; the other ranks get None and must write nothing.
    """
    rows, fits = {}, {}
    for variant in variants:
        print(f"--- {variant.name}")
        done = run_variant(variant, trainer, data, logs, seed, num_classes, cost_size, resume)
        if done is not None:
            fits[variant.name], rows[variant.name] = done
    if not fits:  # not DDP rank 0
        return None
    winner = pick(rows, tolerance)
    chosen = next(v for v in variants if v.name == winner)
    save_model(fits[winner].module.model, out, describe(chosen.model, num_classes, fits[winner], variant=winner,
                                                        train=chosen.train, cost_size=cost_size))
    return {"rule": RULE, "iou_tolerance": tolerance, "cost_size": cost_size, "winner": winner,
            "candidates": rows}


def continue_study(prev: Path, options: dict[str, TrainCfg], trainer: TrainerCfg, data: Path, logs: Path,
                   seed: int, tolerance: float, out: Path, resume: ResumeStore | None = None) -> dict[str, Any] | None:
    """Train the model in `prev` further with each named training config; keep the best.

    Every option starts from the same weights and gets the same epochs, so the comparison
    is fair and cheaper than training each from scratch.
    """
    model, card = load_model(prev)
    variants = [Variant(name, card.model, train, init=model) for name, train in options.items()]
    record = run_study(variants, trainer, data, logs, seed, card.num_classes, card.cost_size, tolerance, out, resume)
    if record is None:  # not DDP rank 0
        return None
    return {"start": {"model": str(prev), "variant": card.variant, "metrics": card.metrics}, **record}
