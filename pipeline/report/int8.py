"""The report's INT8 rows: the shipped model in FP32 and INT8 side by side, from the export
stage's record (reports/int8.json, pipeline.int8) and the report's own interleaved timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.report.collect import read_json

INT8 = "INT8"  # the INT8 file's key among the timed models (no run is named so)
VNNI_NOTE = ("INT8 pays off on CPUs with AVX512-VNNI or AVX-VNNI (8-bit dot products); without them ONNX "
             "Runtime's integer kernels gain little over FP32, so time it on the target device "
             "(`deploy/onnx_latency.py`).")


def read_record(path: Path) -> dict[str, Any] | None:
    """The export stage's INT8 record, or None when it was not written (an older export)."""
    return read_json(path) if path.exists() else None


def shipped_file(record: dict[str, Any] | None) -> Path | None:
    """The INT8 ONNX file the export stage shipped, if it shipped one and it is there."""
    if not record or not record.get("accepted") or not record.get("int8"):
        return None
    path = Path(record["int8"])
    return path if path.exists() else None


def chart_points(record: dict[str, Any] | None, speed: dict[str, dict[str, Any]], label: str
                 ) -> dict[str, tuple[float, float]]:
    """{label: (ms, test IoU)} of the timed INT8 model for the latency chart (empty without one)."""
    if INT8 not in speed or not record:
        return {}
    return {f"{label} INT8": (speed[INT8]["onnx_ms"], record["test_iou"]["int8"])}


def metrics_entry(record: dict[str, Any] | None, speed: dict[str, dict[str, Any]], label: str
                  ) -> dict[str, dict[str, float]]:
    """The shipped INT8 model's figures for reports/report.json ({} without one): its ONNX
    Runtime test and val IoU (the export stage's; `_onnx` keys, as the other rows' `test/iou`
    is PyTorch's) and its measured latency, size and memory."""
    if INT8 not in speed or not record:
        return {}
    return {f"{label} INT8": {"test/iou_onnx": record["test_iou"]["int8"], "val/iou_onnx": record["val_iou"]["int8"],
                              **speed[INT8]}}


def _cells(values: list[Any]) -> str:
    """A Markdown table row; floats (the IoUs) with 3 decimals, the rest pre-formatted."""
    return "| " + " | ".join(format(v, ".3f") if isinstance(v, float) else str(v) for v in values) + " |"


def int8_section(record: dict[str, Any] | None, speed: dict[str, dict[str, Any]], ship: str, label: str,
                 timing: str) -> list[str]:
    """Markdown: the FP32 and INT8 rows of the shipped model (`ship`: its key in `speed`),
    their val and test IoU in ONNX Runtime, measured latency with the device, and the outcome."""
    if record is None:
        return []
    if not record["enabled"]:
        return ["## INT8", f"Not built: {record['outcome']}. {VNNI_NOTE}"]
    fp32, val, test = speed[ship], record["val_iou"], record["test_iou"]
    fmt = record["format"]
    int8_timed = speed.get(INT8)
    kept = record["kept_fp32"]
    lines = ["| model | weights / activations | FP32 nodes | val IoU | test IoU | ORT ms | ORT x dense | x FP32 "
             "| ONNX MB | peak MB ORT |", "|---" * 10 + "|",
             _cells([f"{label} FP32", "FP32", "all", val["fp32"], test["fp32"], f"{fp32['onnx_ms']:.1f}",
                     f"{fp32['onnx_speedup']:.2f}", "1.00", f"{fp32['onnx_mb']:.2f}", f"{fp32['onnx_peak_mb']:.0f}"])]
    if int8_timed:
        # paired per round with the FP32 file it came from; older records: the two paired speed-ups' ratio
        ratio = int8_timed.get("onnx_x_source", int8_timed["onnx_speedup"] / fp32["onnx_speedup"])
        lines.append(_cells([f"{label} INT8", f"{fmt['weights']} / {fmt['activations']} ({fmt['format']}, "
                             f"per-channel)" if fmt["per_channel"] else f"{fmt['weights']} / {fmt['activations']}",
                             ", ".join(f"`{n}`" for n in kept) or "none", val["int8"], test["int8"],
                             f"{int8_timed['onnx_ms']:.1f}", f"{int8_timed['onnx_speedup']:.2f}",
                             f"{ratio:.2f}", f"{int8_timed['onnx_mb']:.2f}", f"{int8_timed['onnx_peak_mb']:.0f}"]))
    else:
        lines.append(_cells([f"{label} INT8 (**not shipped**)", f"{fmt['weights']} / {fmt['activations']}", "-",
                             val["int8"], test["int8"], "-", "-", "-", "-", "-"]))
    return ["## INT8", "\n".join(lines),
            f"{record['outcome']}. IoU: line class in ONNX Runtime at the model's tuned threshold, pixels summed "
            f"over the split; INT8 is shipped only if its val IoU is at most {record['max_iou_drop']:g} below the "
            f"FP32 file's (test IoU is reported, never used). Calibration: {record['calibration_crops']} training "
            f"crops of {record['calibration_size']} px ({fmt['calibration']}). Latency: timed on {timing}, "
            f"interleaved with the FP32 models above; 'x FP32' = the median over rounds of the FP32 file's time / "
            f"the INT8 file's in the same round. {VNNI_NOTE}"]
