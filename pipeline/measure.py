"""Cost figures counted one way for every table: MACs and params (latency: pipeline.speed)."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn


def macs_and_params(model: nn.Module, height: int, width: int | None = None) -> tuple[int, int]:
    """Multiply-accumulates of one (1, 3, H, W) forward pass and the parameter count
    (Torch-Pruning's counter, so pruned and dense models are counted alike)."""
    example = torch.zeros(1, 3, height, width or height)
    was_training = model.training
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example)
    model.train(was_training)
    return int(macs), int(params)
