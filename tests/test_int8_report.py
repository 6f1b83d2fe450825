"""The report's INT8 rows and chart: the INT8 file timed beside the FP32 models, its row with the
device (VNNI included), the latency chart, and a rejected INT8 model shown as not shipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.artifact import save_model
from pipeline.config import ModelCfg, ReportCfg
from pipeline.export import export_onnx
from pipeline.models import create_model
from pipeline.quantize import quantize_int8, training_crops
from pipeline.report.figures import iou_vs_latency
from pipeline.report.int8 import INT8, chart_points, int8_section, metrics_entry
from pipeline.report.timing import DENSE, describe_environment, measure_models, timing_environment

CARD = {"num_classes": 2, "threshold": 0.5, "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}}


@pytest.fixture(scope="module")
def timed(tmp_path_factory, params, tiny_data) -> tuple[dict, Path]:
    """The tiny model as a folder, its INT8 file, and measure_models' figures of both."""
    torch.manual_seed(0)
    cfg = ModelCfg.model_validate(params["model"])
    root = tmp_path_factory.mktemp("int8report")
    meta = {**CARD, "model": cfg.model_dump()}
    model = create_model(cfg).eval()
    save_model(model, root / "dense", meta)
    export_onnx(model, meta, root / "fp32.onnx", 64, 64)
    quantize_int8(root / "fp32.onnx", root / "int8.onnx", training_crops(tiny_data, 2, 64))
    speed = measure_models({DENSE: root / "dense"}, (64, 64), ReportCfg(threads=1, warmup=1, rounds=3),
                           {INT8: root / "int8.onnx"}, {INT8: DENSE})
    return speed, root


def record(accepted: bool) -> dict:
    return {"enabled": True, "accepted": accepted, "int8": "x.onnx" if accepted else None,
            "format": {"format": "QDQ", "activations": "U8", "weights": "S8", "per_channel": True,
                       "calibration": "MinMax"},
            "calibration_crops": 16, "calibration_size": 128, "max_iou_drop": 0.01,
            "kept_fp32": ["/head/Conv"] if accepted else None, "val_iou": {"fp32": 0.61, "int8": 0.605},
            "test_iou": {"fp32": 0.58, "int8": 0.57}, "outcome": "INT8 shipped with 1 node(s) in FP32"}


def test_int8_file_is_timed_beside_the_fp32_models(timed):
    speed, root = timed
    assert set(speed) == {DENSE, INT8}
    assert speed[INT8]["onnx_ms"] > 0 and speed[INT8]["onnx_speedup"] > 0 and speed[INT8]["onnx_peak_mb"] > 0
    assert speed[INT8]["onnx_mb"] == pytest.approx((root / "int8.onnx").stat().st_size / 1e6)
    assert speed[INT8]["onnx_mb"] < speed[DENSE]["onnx_mb"]  # 8-bit weights: a smaller file


def test_int8_rows_sit_beside_fp32_with_the_device(timed):
    speed, _ = timed
    env = timing_environment(2)
    assert env["vnni"] in ("AVX512-VNNI", "AVX-VNNI", "AVX512-VNNI, AVX-VNNI", "no VNNI", "VNNI unknown")
    timing = describe_environment(env)
    assert env["vnni"] in timing
    text = "\n".join(int8_section(record(True), speed, DENSE, "dense", timing))
    rows = [line for line in text.splitlines() if line.startswith("| dense ")]
    assert len(rows) == 2 and "FP32" in rows[0] and "INT8" in rows[1] and "`/head/Conv`" in rows[1]
    assert f"{speed[INT8]['onnx_ms']:.1f}" in rows[1] and "0.605" in rows[1] and "0.570" in rows[1]
    assert f"| {speed[INT8]['onnx_x_source']:.2f} |" in rows[1]  # x FP32: paired per round with its source
    planted = {**speed, INT8: {**speed[INT8], "onnx_x_source": 9.87}}
    assert "| 9.87 |" in "\n".join(int8_section(record(True), planted, DENSE, "dense", timing))
    assert timing in text and "AVX512-VNNI" in text
    entry = metrics_entry(record(True), speed, "dense")["dense INT8"]
    assert entry["test/iou_onnx"] == 0.57 and "test/iou" not in entry and entry["onnx_ms"] == speed[INT8]["onnx_ms"]


def test_a_rejected_int8_model_is_shown_as_not_shipped(timed):
    speed, _ = timed
    without = {key: value for key, value in speed.items() if key != INT8}
    text = "\n".join(int8_section(record(False), without, DENSE, "dense", "here"))
    assert "INT8 (**not shipped**)" in text
    assert chart_points(record(False), without, "dense") == {}
    assert int8_section(None, speed, DENSE, "dense", "here") == []


def test_latency_chart_draws_fp32_and_int8(timed, tmp_path):
    speed, _ = timed
    rows = {"loss dice (dense)": {"kind": "dense", "test/iou": 0.58, **speed[DENSE]},
            "baseline FPN": {"kind": "candidate", "test/iou": 0.5}}  # not timed: left out
    points = chart_points(record(True), speed, "dense")
    assert points == {"dense INT8": (speed[INT8]["onnx_ms"], 0.57)}
    iou_vs_latency(rows, points, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000
