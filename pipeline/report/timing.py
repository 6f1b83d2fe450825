"""Latency, cost and file size of the dense and fine-tuned models, measured one way for all,
with the machine and runtime versions the timings belong to."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from pipeline.artifact import load_model
from pipeline.config import ReportCfg
from pipeline.console import progress
from pipeline.export import export_onnx
from pipeline.machine import cpu_name, vnni
from pipeline.measure import macs_and_params
from pipeline.memory import peak_memory
from pipeline.speed import interleaved, onnx_runner, paired_ratio, torch_runner

DENSE = "dense"
# Why a cut can look slower in ONNX Runtime than in PyTorch: said once wherever latency is shown.
ORT_NOTE = ("Why ONNX Runtime can be slower than PyTorch here: at small inputs one pass takes milliseconds, "
            "so per-operator costs outweigh the arithmetic (ONNX Runtime's CPU convolutions reorder tensors to "
            "and from a blocked NCHWc layout and hand every operator to its thread pool); at larger inputs the "
            "arithmetic dominates: on 512 px scene windows (batch 4) ONNX Runtime ran the dense model 1.7x faster than "
            "PyTorch on this project's 2-core machine (bench/results/scene.md).")


def timing_environment(threads: int) -> dict[str, Any]:
    """What every latency figure depends on besides the model: machine (with its VNNI support,
    for INT8), threads, runtime versions."""
    import onnxruntime
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "vnni": vnni(), "threads": threads,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def describe_environment(env: dict[str, Any]) -> str:
    """One line: `{cpu} ({cores} cores, {vnni}), {threads} threads, PyTorch x, ONNX Runtime y, Python z`."""
    threads = f"{env['threads']} thread" + ("s" if env["threads"] != 1 else "")
    machine = f"{env['cores']} cores" + (f", {env['vnni']}" if env.get("vnni") else "")  # older records lack it
    return (f"{env['cpu']} ({machine}), {threads}, PyTorch {env['torch']}, "
            f"ONNX Runtime {env['onnxruntime']}, Python {env['python']}")


def measure_models(folders: dict[str, Path], size: tuple[int, int], cfg: ReportCfg,
                   onnx_files: dict[str, Path] | None = None, copies: dict[str, str] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """Per model folder ({DENSE: ..., run: ...}): eager and ONNX Runtime median latency and
    speed-up over DENSE (paired, interleaved in one run), GMACs and Mparams counted at the
    timed size, the ONNX file's size, and ONNX Runtime's peak RSS in a fresh process. (Eager
    peak memory is left out: PyTorch's runtime, about 800 MB, hid any model's share.)
    `onnx_files` ({name: file}, e.g. the INT8 export) are timed as they are, interleaved with
    the folders' ONNX runs: their ONNX figures only."""
    onnx_files = onnx_files or {}
    height, width = size
    with tempfile.TemporaryDirectory(prefix="report-onnx-") as tmp:
        onnx, runners, costs = {}, {}, {}
        for name, folder in folders.items():
            model, card = load_model(folder)
            macs, params = macs_and_params(model, height, width)
            costs[name] = {"gmacs": macs / 1e9, "mparams": params / 1e6}
            onnx[name] = Path(tmp) / f"{name}.onnx"
            export_onnx(model, card, onnx[name], height, width)
            runners[f"eager {name}"] = torch_runner(model, height, width, cfg.threads)
            runners[f"onnx {name}"] = onnx_runner(onnx[name], height, width, cfg.threads)
        for name, path in onnx_files.items():
            onnx[name] = path
            runners[f"onnx {name}"] = onnx_runner(path, height, width, cfg.threads)
        print(f"latency: {len(runners)} runners x {cfg.rounds} interleaved rounds at {height}x{width}")
        eager = interleaved({k: v for k, v in runners.items() if k.startswith("eager")}, f"eager {DENSE}",
                            cfg.rounds, cfg.warmup, desc="eager latency")
        ort = interleaved({k: v for k, v in runners.items() if k.startswith("onnx")}, f"onnx {DENSE}",
                          cfg.rounds, cfg.warmup, desc="ONNX Runtime latency")
        table = {}
        for name in progress(folders, "peak memory (fresh process each)", unit="models"):
            table[name] = {
                **costs[name],
                "eager_ms": eager[f"eager {name}"]["median_ms"], "eager_speedup": eager[f"eager {name}"]["speedup"],
                "onnx_ms": ort[f"onnx {name}"]["median_ms"], "onnx_speedup": ort[f"onnx {name}"]["speedup"],
                "onnx_mb": onnx[name].stat().st_size / 1e6,
                "onnx_peak_mb": peak_memory(onnx[name], height, width, cfg.threads)["peak_mb"],
            }
        for name in onnx_files:
            table[name] = {"onnx_ms": ort[f"onnx {name}"]["median_ms"], "onnx_speedup": ort[f"onnx {name}"]["speedup"],
                           "onnx_mb": onnx[name].stat().st_size / 1e6,
                           "onnx_peak_mb": peak_memory(onnx[name], height, width, cfg.threads)["peak_mb"]}
            if name in (copies or {}):  # e.g. INT8 over the FP32 model it was quantised from, paired per round
                table[name]["onnx_x_source"] = paired_ratio(ort[f"onnx {copies[name]}"]["times_ms"],
                                                            ort[f"onnx {name}"]["times_ms"])
    return table


def speed_notes(rows: dict[str, dict[str, Any]], speed: dict[str, dict[str, Any]], floor: float = 1.05) -> list[str]:
    """One line per fine-tuned model: MAC cut against measured speed-ups, flagged when the
    cut did not turn into a speed-up (below `floor`) on this CPU, or when the run failed (then
    it is no candidate, however fast)."""
    dense_gmacs = next(r["gmacs"] for r in rows.values() if r["kind"] == "dense")
    notes = []
    for row in rows.values():
        if row["kind"] != "final" or row["run"] not in speed:
            continue
        s = speed[row["run"]]
        cut = 1 - row["gmacs"] / dense_gmacs
        line = (f"- `{row['run']}`: MACs -{cut:.0%}; speed-up {s['eager_speedup']:.2f}x eager, "
                f"{s['onnx_speedup']:.2f}x ONNX Runtime")
        slow = [rt for rt, key in (("eager", "eager_speedup"), ("ONNX Runtime", "onnx_speedup")) if s[key] < floor]
        if slow:
            line += f" - **the MAC reduction did not turn into a speed-up ({' and '.join(slow)})**"
        if row.get("failed"):
            line += " - **failed run: not a candidate**"
        notes.append(line)
    return notes
