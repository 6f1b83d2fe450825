#!/usr/bin/env python3
"""Time the latency table's layer files on this device: needs only numpy and onnxruntime.

On the workstation, `python -m pipeline.latency.layers --out latency/files` writes the
files and manifest.json; copy that folder and this script to the target and run, e.g.

    pip install numpy onnxruntime
    python time_layers.py latency/files --threads 2 --out timings.json

Batch 1, warm-up first, then the files are timed interleaved as in onnx_latency.py:
each round runs every file of a chunk once, the order rotating, so load from other
processes hits them alike. Files are timed in chunks of --chunk (only one chunk's
sessions are open at a time, to bound memory); a file's time is its median over rounds.
The output JSON holds the device fingerprint (CPU model, AVX512-VNNI, threads, onnxruntime
version, load average before and after) and the median ms of every file. Sessions do not
spin (`session`), nor do onnx_latency.py's: time whole models with it to compare.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def cpu_info() -> dict[str, object]:
    """CPU model and AVX512-VNNI flag from /proc/cpuinfo (Linux; None where unknown), else `platform`."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first core's
    except OSError:
        pass
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware")
    flags = fields.get("flags") or fields.get("Features")
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "avx512_vnni": None if flags is None else "avx512_vnni" in flags.split(),
    }


def fingerprint(threads: int) -> dict[str, object]:
    """What the timings depend on besides the files."""
    return {
        **cpu_info(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "cores": os.cpu_count(),
        "threads": threads,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): other work skews timings."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with a fixed number of intra-op threads and all graph optimisations
    (the NCHWc layout transformer among them), as deployments run. Its threads do not spin
    when idle: with a chunk of sessions open and run in turn, every session's pool would
    otherwise keep spinning after its run and take the cores from the next one (a whole
    model interleaved with 30 small files ran 25 times slower on a 2-core VM)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(path: Path, threads: int, rng: np.random.Generator):
    """One batch-1 run of `path` per call, on a fixed random input of its declared shape."""
    s = session(path, threads)
    spec = s.get_inputs()[0]
    if not all(isinstance(d, int) for d in spec.shape):
        raise SystemExit(f"{path}: input {spec.name} has a dynamic shape {spec.shape}; the table's files are static")
    feed = {spec.name: rng.standard_normal(spec.shape).astype(np.float32)}
    return lambda: s.run(None, feed)


def time_chunk(paths: list[Path], threads: int, warmup: int, rounds: int) -> dict[str, float]:
    """Median ms of each file, timed interleaved with the others of the chunk."""
    rng = np.random.default_rng(0)
    runs = [runner(path, threads, rng) for path in paths]
    for run in runs:
        for _ in range(warmup):
            run()
    times = [[] for _ in runs]
    for r in range(rounds):
        shift = r % len(runs)
        for i in list(range(shift, len(runs))) + list(range(shift)):
            start = time.perf_counter()
            runs[i]()
            times[i].append((time.perf_counter() - start) * 1000)
    return {path.name: statistics.median(t) for path, t in zip(paths, times, strict=True)}


def files_of(folder: Path) -> list[Path]:
    """The manifest's files in its order, or every .onnx file of the folder."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return [folder / name for name in json.loads(manifest.read_text())["files"]]
    return sorted(folder.glob("*.onnx"))


def main(argv: list[str] | None = None) -> None:
    """Time the files and write the timings JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="folder of the table's files (with manifest.json)")
    p.add_argument("--out", type=Path, help="timings JSON (default: <folder>/timings.json)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default: 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per file first (default: 3)")
    p.add_argument("--rounds", type=int, default=15, help="timed runs per file (default: 15)")
    p.add_argument("--chunk", type=int, default=64, help="files open and interleaved at once (default: 64)")
    args = p.parse_args(argv)
    paths = files_of(args.folder)
    if not paths:
        raise SystemExit(f"{args.folder}: no .onnx files")
    load_before = load_average()
    times: dict[str, float] = {}
    for start in range(0, len(paths), args.chunk):
        times.update(time_chunk(paths[start : start + args.chunk], args.threads, args.warmup, args.rounds))
        print(f"{len(times)}/{len(paths)} files timed", file=sys.stderr)
    record = {
        "fingerprint": fingerprint(args.threads),
        "warmup": args.warmup,
        "rounds": args.rounds,
        "chunk": args.chunk,
        "load_average": [load_before, load_average()],
        "times_ms": times,
    }
    out = args.out or args.folder / "timings.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out)
    print(
        f"{out}: {len(times)} files, {args.threads} threads, {args.rounds} interleaved rounds "
        f"on {record['fingerprint']['cpu']}"
    )


if __name__ == "__main__":
    main()
