"""One seed's models of the latency benchmark exported, quantised and timed (bench/latency.py
keeps the records; this module is what their code hash covers: it does not import the
benchmark's bookkeeping)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from bench.device_table import SIZE

DENSE = "dense"


def measure_seed(arms: dict[str, tuple[dict[str, Any], Path]], data: Path, threads: int, rounds: int
                 ) -> dict[str, Any]:
    """Per arm: FP32 and (if accepted) INT8 files' median ms, paired speed-ups over dense FP32,
    INT8 over its own FP32, the INT8 check's record and the test counts of both formats."""
    from pipeline.artifact import load_model
    from pipeline.export import export_onnx
    from pipeline.int8 import onnx_counts, quantize_checked
    from pipeline.sections import QuantizeCfg
    from pipeline.speed import interleaved, onnx_runner, paired_ratio

    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        files = {}
        for number, (arm, (_, folder)) in enumerate(arms.items()):
            model, card = load_model(folder)
            fp32, int8 = Path(tmp) / f"{number}.onnx", Path(tmp) / f"{number}.int8.onnx"
            # dynamic axes, as the export stage ships: some PLDU photos are portrait, and a static
            # 384x544 file could not score them
            export_onnx(model, card, fp32, *SIZE, dynamic=True)
            check = quantize_checked(fp32, int8, data, QuantizeCfg())
            files[arm] = {"fp32": fp32, **({"int8": int8} if check["accepted"] else {})}
            rows[arm] = {"int8_check": {k: check[k] for k in ("accepted", "kept_fp32", "val_iou", "outcome")},
                         "test_counts": {fmt: onnx_counts(path, data, "test") for fmt, path in files[arm].items()}}
        runners = {(arm, fmt): onnx_runner(path, *SIZE, threads) for arm, pair in files.items()
                   for fmt, path in pair.items()}
        load_before = os.getloadavg()[0]
        timed = interleaved(runners, (DENSE, "fp32"), rounds=rounds, desc="latency")
        load_after = os.getloadavg()[0]
    for (arm, fmt), figures in timed.items():
        rows[arm][fmt] = {"median_ms": figures["median_ms"], "speedup": figures["speedup"]}
        if fmt == "int8":
            rows[arm]["int8"]["x_fp32"] = paired_ratio(timed[arm, "fp32"]["times_ms"], figures["times_ms"])
    return {"rows": rows, "load_average": [load_before, load_after], "threads": threads, "rounds": rounds}
