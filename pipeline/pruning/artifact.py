"""Pruned model artifacts: the usual model.json + model.pt, with the channels removed per
dependency group recorded in model.json. Loading rebuilds the dense model from its
description, removes the same channels with Torch-Pruning, then loads the tensors-only
state_dict (weights_only=True): no pickled modules, ever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from pipeline.artifact import load_meta, load_weights, save_model
from pipeline.config import ModelCfg
from pipeline.errors import PipelineError
from pipeline.models import create_model
from pipeline.pruning.templates import remove_channels

PRUNED = "pruned_channels"  # model.json key: {group root conv: removed channel indices}
TRACE_SIZE = 64  # any size the architecture accepts; channels do not depend on it


def save_pruned(model: nn.Module, folder: Path, meta: dict[str, Any], removed: dict[str, list[int]]) -> None:
    """Write a pruned model; `meta` must describe the dense model (its "model" section)."""
    save_model(model, folder, {**meta, PRUNED: removed})


def load_pruned(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by `save_pruned` (or a dense one: nothing removed)."""
    meta = load_meta(folder)
    model = create_model(ModelCfg.model_validate(meta["model"]), meta.get("num_classes", 2))
    removed = meta.get(PRUNED) or {}
    if removed:
        example = torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE)
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
        try:
            remove_channels(model, removed, dg)
        except (AttributeError, ValueError, IndexError) as err:
            raise PipelineError(f"{folder}: {PRUNED} does not fit {meta['model']} ({err})") from None
        model.train()  # tracing left it in eval mode; hand it back as create_model does
    load_weights(model, folder)
    return model, meta
