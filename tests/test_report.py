"""Report parts: tolerance F1, interleaved latency, Pareto front, HTML, memory in a fresh process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import SweepCfg
from pipeline.data.sources.base import IGNORE_INDEX, LINE
from pipeline.errors import PipelineError
from pipeline.metrics import ToleranceMetrics, tolerance_counts, tolerance_f1
from pipeline.report.collect import STUDIES, gather, sweep_runs
from pipeline.report.figures import pareto_front
from pipeline.report.render import model_table, to_html
from pipeline.speed import interleaved, paired_ratio


def line_mask(size: int, column: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[:, column] = LINE
    return mask


def test_tolerance_f1_forgives_a_small_shift_but_not_a_large_one():
    true = line_mask(200, 100) == LINE
    valid = np.ones_like(true)
    # diagonal 283 px x 0.0075 = 2.1 px: a 2 px shift is within, a 5 px shift is not
    near = tolerance_counts(line_mask(200, 102) == LINE, true, valid)
    far = tolerance_counts(line_mask(200, 105) == LINE, true, valid)
    assert tolerance_f1(near)[2] == 1.0
    assert tolerance_f1(far)[2] == 0.0
    assert near["tol_pred"] == near["tol_true"] == 200


def test_tolerance_ignores_padding_and_void():
    mask = line_mask(64, 10).astype(np.int64)
    mask[:, 32:] = IGNORE_INDEX  # padding
    pred = np.zeros((64, 64), bool)
    pred[:, 40] = True  # a "prediction" in the padding must not count as a false alarm
    counts = tolerance_counts(pred, mask == LINE, mask != IGNORE_INDEX)
    assert counts["tol_pred"] == 0 and counts["tol_true"] == 64 and counts["tol_true_hit"] == 0


def test_tolerance_metric_sums_over_images():
    metric = ToleranceMetrics()
    target = np.stack([line_mask(100, 50), line_mask(100, 20)]).astype(np.int64)
    prob = np.zeros((2, 100, 100), np.float32)
    prob[0, :, 50] = 0.9  # image 1 found exactly, image 2 missed
    import torch

    metric.update(torch.from_numpy(prob), torch.from_numpy(target), 0.5)
    out = metric.compute()
    assert float(out["tol_precision"]) == 1.0 and float(out["tol_recall"]) == 0.5


def test_interleaved_speedup_is_the_median_of_paired_ratios():
    # a fake clock: the dense runner takes 10 ms, the pruned one 5 ms, except that one round
    # is slowed 10x for both by "background load"; the paired ratio stays 2
    costs = {"dense": 10.0, "pruned": 5.0}
    state = {"t": 0.0}
    calls = []

    def runner(name):
        def run():
            calls.append(name)
            slow = 10 if len(calls) in (5, 6) else 1
            state["t"] += costs[name] * slow / 1000

        return run

    out = interleaved({n: runner(n) for n in costs}, "dense", rounds=5, warmup=1, clock=lambda: state["t"])
    assert out["pruned"]["speedup"] == pytest.approx(2.0)
    assert out["dense"]["speedup"] == pytest.approx(1.0)
    assert out["dense"]["median_ms"] == pytest.approx(10.0)
    assert calls[2:6] == ["dense", "pruned", "pruned", "dense"]  # after warm-up the order rotates each round
    assert len(out["pruned"]["times_ms"]) == 5  # every round kept: any two runners pair up
    assert paired_ratio(out["dense"]["times_ms"], out["pruned"]["times_ms"]) == pytest.approx(2.0)
    # two separate medians would not pair the slowed round's times with each other
    assert paired_ratio([10, 10, 100, 10], [5, 50, 50, 5]) == pytest.approx(2.0)


def test_interleaved_needs_the_reference():
    with pytest.raises(ValueError, match="reference"):
        interleaved({"a": lambda: None}, "dense", rounds=3)


def test_pareto_front_keeps_only_undominated_points():
    points = [(3.0, 0.40), (1.0, 0.30), (2.0, 0.20), (2.0, 0.35), (4.0, 0.38)]
    assert pareto_front(points) == [(1.0, 0.30), (2.0, 0.35), (3.0, 0.40)]


def test_html_is_self_contained(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG fake")
    html = to_html("# t\n\n" + model_table({"m": {"test/iou": 0.5}}) + "\n\n![a](figures/a.png)\n", tmp_path, "t")
    assert "<table>" in html and "0.500" in html
    assert re.findall(r'src="([^"]*)"', html) == ["data:image/png;base64,iVBORyBmYWtl"]


def test_peak_memory_runs_in_a_fresh_process(tmp_path, params):
    from pipeline.config import ModelCfg
    from pipeline.export import export_onnx
    from pipeline.memory import peak_memory
    from pipeline.models import create_model

    model = create_model(ModelCfg.model_validate(params["model"]))
    export_onnx(model, {"model": {}, "num_classes": 2}, tmp_path / "m.onnx", 64, 64)
    onnx = peak_memory(tmp_path / "m.onnx", 64, 64, threads=1)
    assert 0 < onnx["loaded_mb"] <= onnx["peak_mb"]
    # the parent (this test process, with torch loaded) is far bigger; a figure inherited from
    # it through fork would not be below the parent's own current size
    status = Path("/proc/self/status").read_text()
    parent_mb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    assert onnx["peak_mb"] < parent_mb, json.dumps(onnx)


def test_sweep_runs_are_named_as_dvc_names_them():
    sweep = SweepCfg(methods=["magnitude", "hqs_l0"], macs_reductions=[0.5, 0.25])
    assert sweep_runs(sweep) == ["hqs_l0-0.25", "hqs_l0-0.5", "magnitude-0.25", "magnitude-0.5"]


def test_gather_reads_exactly_the_sweeps_runs(tmp_path):
    for stage in STUDIES:
        (tmp_path / f"{stage}.json").write_text("{}")
    for stage in ("prune", "finetune"):
        (tmp_path / stage).mkdir()
        for run in ("hqs_l0-0.5", "l1-0.5"):  # l1-0.5 left the sweep: its record stays, its model is gone
            (tmp_path / stage / f"{run}.json").write_text(json.dumps({"run": run}))
        (tmp_path / stage / "l2-0.5.json").write_text("not JSON")  # a broken leftover must not matter
    records = gather(tmp_path, ["hqs_l0-0.5"])
    assert records["prune"] == records["finetune"] == {"hqs_l0-0.5": {"run": "hqs_l0-0.5"}}
    with pytest.raises(PipelineError, match=r"prune/magnitude-0.5.json: cannot read stage record"):
        gather(tmp_path, ["hqs_l0-0.5", "magnitude-0.5"])  # a sweep run without its record names the file
