"""Cost figures, measured one way for every table: MACs, params, CPU latency."""

from __future__ import annotations

import statistics
import time

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


@torch.inference_mode()
def latency_ms(model: nn.Module, size: int, runs: int = 10, warmup: int = 3, threads: int = 2) -> float:
    """Median wall time of a batch-1 forward pass on the CPU, after warm-up.

    Noisy on shared machines: report it, never decide on it.
    """
    previous = torch.get_num_threads()  # measuring must not change how the caller trains
    torch.set_num_threads(threads)
    model = model.eval().cpu()
    x = torch.zeros(1, 3, size, size)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times)
