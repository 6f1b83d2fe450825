"""Latency and peak memory of the dense and fine-tuned models, measured one way for all."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline.artifact import load_model
from pipeline.config import ReportCfg
from pipeline.console import progress
from pipeline.export import export_onnx
from pipeline.memory import peak_memory
from pipeline.speed import interleaved, onnx_runner, torch_runner

DENSE = "dense"


def measure_models(folders: dict[str, Path], size: tuple[int, int], cfg: ReportCfg) -> dict[str, dict[str, Any]]:
    """Per model folder ({DENSE: ..., run: ...}): eager and ONNX Runtime median latency and
    speed-up over DENSE (paired, interleaved in one run), and peak RSS in a fresh process."""
    height, width = size
    with tempfile.TemporaryDirectory(prefix="report-onnx-") as tmp:
        onnx = {}
        runners = {}
        for name, folder in folders.items():
            model, card = load_model(folder)
            onnx[name] = Path(tmp) / f"{name}.onnx"
            export_onnx(model, card, onnx[name], height, width)
            runners[f"eager {name}"] = torch_runner(model, height, width, cfg.threads)
            runners[f"onnx {name}"] = onnx_runner(onnx[name], height, width, cfg.threads)
        print(f"latency: {len(runners)} runners x {cfg.rounds} interleaved rounds at {height}x{width}")
        eager = interleaved({k: v for k, v in runners.items() if k.startswith("eager")}, f"eager {DENSE}",
                            cfg.rounds, cfg.warmup, desc="eager latency")
        ort = interleaved({k: v for k, v in runners.items() if k.startswith("onnx")}, f"onnx {DENSE}",
                          cfg.rounds, cfg.warmup, desc="ONNX Runtime latency")
        table = {}
        for name, folder in progress(folders.items(), "peak memory (fresh process each)", unit="models"):
            table[name] = {
                "eager_ms": eager[f"eager {name}"]["median_ms"], "eager_speedup": eager[f"eager {name}"]["speedup"],
                "onnx_ms": ort[f"onnx {name}"]["median_ms"], "onnx_speedup": ort[f"onnx {name}"]["speedup"],
                "eager_peak_mb": peak_memory(folder, height, width, cfg.threads)["peak_mb"],
                "onnx_peak_mb": peak_memory(onnx[name], height, width, cfg.threads)["peak_mb"],
            }
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
