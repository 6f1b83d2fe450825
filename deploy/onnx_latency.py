#!/usr/bin/env python3
"""Latency of exported power-line models on this device: needs only numpy and onnxruntime.

Copy this file and the .onnx file(s) to the target and run, e.g.

    pip install numpy onnxruntime
    python onnx_latency.py model.onnx --size 384 544 --threads 2
    python onnx_latency.py dense.onnx pruned.onnx --size 384 544   # speed-up of the second

Batch 1, warm-up first; with several models they run interleaved round by round and each
speed-up is the median over rounds of (first model's time / this model's time), so load
from other processes hits both sides of every ratio alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(path: str, threads: int) -> ort.InferenceSession:
    """A CPU session with a fixed number of intra-op threads that do not spin when idle:
    interleaved, an idle session's spinning threads would take the cores from the running one."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def device() -> str:
    """The CPU model (/proc/cpuinfo on Linux, else `platform`), its cores and ONNX Runtime's
    version: a latency means little without them. pipeline/report/timing.py's `cpu_name`
    repeats the CPU lookup on purpose: this script must run alone on the target device."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.split(":")[0].strip() in ("model name", "Model", "Hardware")), "")
    except OSError:
        pass
    cpu = name or platform.processor() or platform.machine()
    return f"{cpu} ({os.cpu_count()} cores), ONNX Runtime {ort.__version__}"


def time_models(paths: list[str], size: tuple[int, int], threads: int, warmup: int, rounds: int
                ) -> list[list[float]]:
    """Per model, its ms in each round: every model runs once per round (batch 1, one fixed
    random input), the order rotating, after `warmup` untimed runs each."""
    x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
    runs = []
    for path in paths:
        s = session(path, threads)
        feed = {s.get_inputs()[0].name: x}
        runs.append(lambda s=s, feed=feed: s.run(None, feed))
    for run in runs:
        for _ in range(warmup):
            run()
    times = [[] for _ in runs]
    for r in range(rounds):
        order = list(range(len(runs)))
        order = order[r % len(runs):] + order[:r % len(runs)]
        for i in order:
            start = time.perf_counter()
            runs[i]()
            times[i].append((time.perf_counter() - start) * 1000)
    return times


def speedup(reference: list[float], mine: list[float]) -> float:
    """Median over rounds of the paired ratio reference time / this model's time."""
    return statistics.median(ref / t for ref, t in zip(reference, mine, strict=True))


def main() -> None:
    """Time the models; print median and 90th-percentile ms and speed-ups."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="ONNX files; the first is the reference for speed-ups")
    p.add_argument("--size", type=int, nargs=2, default=[384, 544], metavar=("H", "W"),
                   help="input height and width, multiples of 32 (default: 384 544)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default: 2)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per model first (default: 5)")
    p.add_argument("--rounds", type=int, default=30, help="timed runs per model (default: 30)")
    args = p.parse_args()
    for path in args.models:
        meta = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        print(f"{path}: opset {meta.get('opset', '?')}, threshold {meta.get('threshold', '?')}")
    times = time_models(args.models, tuple(args.size), args.threads, args.warmup, args.rounds)
    print(f"batch 1, {args.size[0]}x{args.size[1]}, {args.threads} threads, {args.rounds} interleaved rounds "
          f"on {device()}")
    for path, t in zip(args.models, times, strict=True):
        print(f"{path}: median {statistics.median(t):.1f} ms, p90 {np.percentile(t, 90):.1f} ms, "
              f"speed-up over {args.models[0]} {speedup(times[0], t):.2f}x")


if __name__ == "__main__":
    main()
