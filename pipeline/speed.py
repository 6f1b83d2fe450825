"""CPU speed measured so that ratios mean something on a noisy machine.

Every model runs batch 1 at the same input size with a fixed thread count, after warm-up,
interleaved round by round (A B C, B C A, ...), and a model's speed-up is the median over
rounds of (reference time / its time) in that round: background load hits both sides of a
ratio alike, where it would skew two separately measured medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.console import progress

if TYPE_CHECKING:  # torch is imported only where used: the ONNX path runs without it
    from torch import nn

Runner = Callable[[], object]


def torch_runner(model: nn.Module, height: int, width: int, threads: int) -> Runner:
    """One batch-1 eager forward pass on the CPU per call."""
    import torch

    model = model.eval().cpu()
    x = torch.zeros(1, 3, height, width)

    def step() -> object:
        torch.set_num_threads(threads)  # others (ONNX Runtime, libraries) may have changed it
        with torch.inference_mode():
            return model(x)

    return step


def onnx_runner(path: Path, height: int, width: int, threads: int) -> Runner:
    """One batch-1 ONNX Runtime (CPU) run per call, `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # interleaved, an idle session's spinning threads would take the cores from the running one
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, height, width), np.float32)}
    return lambda: session.run(None, feed)


def interleaved(runners: dict[str, Runner], reference: str, rounds: int = 20, warmup: int = 3,
                clock: Callable[[], float] = time.perf_counter, desc: str | None = None
                ) -> dict[str, dict[str, float]]:
    """Time every runner once per round, rotating the order; per runner: median ms, the
    median over rounds of the paired ratio reference time / its time ("speedup"), and its
    time in every round ("times_ms"; `paired_ratio` pairs two runners). With `desc`,
    the rounds show progress on stderr (pipeline.console.progress)."""
    names = list(runners)
    if reference not in runners:
        raise ValueError(f"reference {reference!r} is not among the runners {names}")
    for name in names:
        for _ in range(warmup):
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in progress(range(rounds), desc, unit="rounds") if desc else range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            runners[name]()
            times[name].append((clock() - start) * 1000)
    return {name: {"median_ms": statistics.median(t),
                   "speedup": statistics.median(ref / mine for ref, mine in zip(times[reference], t, strict=True)),
                   "times_ms": t}  # per round, for paired ratios between any two runners
            for name, t in times.items()}


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of slow / fast, two runners' `times_ms` from one interleaved run."""
    return statistics.median(a / b for a, b in zip(slow, fast, strict=True))


def time_as_onnx(models: dict[Hashable, tuple[nn.Module, Any]], reference: Hashable, height: int, width: int,
                 threads: int, rounds: int = 20, dynamic: bool = False, desc: str | None = None
                 ) -> dict[Hashable, dict[str, Any]]:
    """Each (model, card) exported to ONNX at height x width (static input unless `dynamic`)
    in a temporary folder and timed there by `interleaved` against `reference`."""
    import tempfile

    from pipeline.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="timing-") as tmp:
        runners = {}
        for number, (key, (model, card)) in enumerate(models.items()):
            path = Path(tmp) / f"{number}.onnx"
            export_onnx(model, card, path, height, width, dynamic=dynamic)
            runners[key] = onnx_runner(path, height, width, threads)
        return interleaved(runners, reference, rounds=rounds, desc=desc)
