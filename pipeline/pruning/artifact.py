"""Transitional: the model loader now lives in pipeline.artifact (load_model / save_model
with a typed ModelCard). These wrappers keep the old dict-based calls working while the
callers move over; nothing new should use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from pipeline.artifact import load_model, save_model

PRUNED = "pruned_channels"  # model.json key: {group root conv: removed channel indices}


def save_pruned(model: nn.Module, folder: Path, meta: dict[str, Any], removed: dict[str, list[int]]) -> None:
    """Write a pruned model; `meta` must describe the dense model (its "model" section)."""
    save_model(model, folder, {**meta, PRUNED: removed})


def load_pruned(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """load_model with the card as a plain dict."""
    model, card = load_model(folder)
    return model, card.to_json()
