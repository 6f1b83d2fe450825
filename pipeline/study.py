"""A study trains named variants with one budget and picks one by a written-down rule.

baseline varies the model, augment the policy, loss the loss; the code is the same.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifact import save_model
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.measure import latency_ms, macs_and_params
from pipeline.train import FitResult, describe, fit


@dataclass
class Variant:
    """One thing to try: a name and the model/training config it means."""

    name: str
    model: ModelCfg
    train: TrainCfg


def run_variant(variant: Variant, trainer: TrainerCfg, data: Path, logs: Path, seed: int,
                num_classes: int, cost_size: int) -> tuple[FitResult, dict[str, Any]]:
    """Train one variant; return the fit and its row: accuracy and cost figures."""
    result = fit(variant.model, variant.train, trainer, data, logs / variant.name, seed, num_classes)
    macs, params = macs_and_params(result.module.model, cost_size)
    row = {
        **result.metrics,
        "gmacs": macs / 1e9,
        "mparams": params / 1e6,
        "latency_ms": latency_ms(result.module.model, cost_size),
        "threshold": result.threshold,
    }
    return result, row


def pick(rows: dict[str, dict[str, float]], tolerance: float) -> str:
    """Highest val IoU, but among variants within `tolerance` of it the fewest MACs wins.

    Uses only deterministic figures; ties break by name so the choice is reproducible.
    """
    best = max(row["val/iou"] for row in rows.values())
    close = [name for name, row in rows.items() if row["val/iou"] >= best - tolerance]
    return min(close, key=lambda name: (rows[name]["gmacs"], name))


RULE = ("highest val/iou; among variants within iou_tolerance of it, the fewest GMACs "
        "(latency is reported, never used: it is noisy)")


def run_study(variants: list[Variant], trainer: TrainerCfg, data: Path, logs: Path, seed: int,
              num_classes: int, cost_size: int, tolerance: float, out: Path) -> dict[str, Any]:
    """Train every variant, save the winner to `out`, return the decision record."""
    rows, fits = {}, {}
    for variant in variants:
        print(f"--- {variant.name}")
        fits[variant.name], rows[variant.name] = run_variant(variant, trainer, data, logs, seed,
                                                             num_classes, cost_size)
    winner = pick(rows, tolerance)
    chosen = next(v for v in variants if v.name == winner)
    save_model(fits[winner].module.model, out,
               describe(chosen.model, num_classes, fits[winner], train=chosen.train.model_dump(), variant=winner))
    return {"rule": RULE, "iou_tolerance": tolerance, "cost_size": cost_size, "winner": winner,
            "candidates": rows}


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write JSON via a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
