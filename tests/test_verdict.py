"""The report opens with the verdict: the model the pick stage chose, the rule, the test IoU
change with its interval, the measured speed-up, the file size, the training data and the
reason, failed runs marked; costs counted at the timed size, with the machine and versions."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from pipeline.artifact import save_model
from pipeline.config import ModelCfg, ReportCfg, SweepCfg
from pipeline.models import create_model
from pipeline.pick import choose
from pipeline.report.build import ReportPaths, write_report
from pipeline.report.verdict import iou_change, training_data
from pipeline.sections import PickCfg
from pipeline.selection import SCORE
from tests.test_dvc_views import write_curve

WIDTHS = {"dense": [16, 16, 8, 8, 8], "hqs_l0-0.5": [8, 8, 8, 8, 8], "magnitude-0.5": [8, 8, 4, 4, 4]}
VAL = {"dense": 0.5, "hqs_l0-0.5": 0.495, "magnitude-0.5": 0.1}  # magnitude: the cheapest, failed
MPARAMS = {"dense": 3.0, "hqs_l0-0.5": 2.0, "magnitude-0.5": 1.0}


def figures(name: str) -> dict[str, float]:
    """A record's figures (GMACs at a cost size other than the timed one: the report recounts)."""
    return {SCORE: VAL[name], "val/iou": VAL[name], "test/iou": 0.3, "test/miou": 0.6, "test/f1": 0.4,
            "test/tol_f1": 0.5, "gmacs": 99.0, "mparams": MPARAMS[name]}


def fake_project(root: Path, data: Path, model: dict) -> ReportPaths:
    """Tiny models and the stage records the report reads, for a sweep of two runs."""
    paths = ReportPaths(**{field.name: root / field.name for field in dataclasses.fields(ReportPaths)})
    paths = dataclasses.replace(paths, data=data, out=root / "reports" / "report.md",
                                html=root / "reports" / "report.html", plots=root / "reports" / "figures")
    for name, channels in WIDTHS.items():
        cfg = ModelCfg.model_validate({**model, "decoder": {"Unet": {"decoder_channels": channels}}})
        folder = paths.checkpoints / ("dense" if name == "dense" else f"final/{name}")
        save_model(create_model(cfg), folder, {"model": cfg.model_dump(), "num_classes": 2})
    study = {"winner": "w", "candidates": {"w": {**figures("dense"), "network": None}}, "cost_size": 256}
    for stage in ("baseline", "augment", "loss"):
        (paths.reports / f"{stage}.json").parent.mkdir(parents=True, exist_ok=True)
        (paths.reports / f"{stage}.json").write_text(json.dumps(study))
    for run in ("hqs_l0-0.5", "magnitude-0.5"):
        prune = {"after_removal": figures(run), "pruned": {"gmacs": 1.0, "mparams": 0.5}, "achieved_reduction": 0.5,
                 "macs_reduction": 0.5, "dense": {"gmacs": 2.0}, "channels": {"conv": [16, 8]}, "saliency_gap": None}
        for stage, record in (("prune", prune), ("finetune", {"epochs": 1, "final": figures(run)})):
            (paths.reports / stage).mkdir(exist_ok=True)
            (paths.reports / stage / f"{run}.json").write_text(json.dumps(record))
    write_curve(paths.logs / "loss" / "w", [0.4, 0.5])
    runs = {run: figures(run) for run in ("hqs_l0-0.5", "magnitude-0.5")}
    picked = choose(figures("dense"), runs, PickCfg(max_iou_drop=0.01, objective="mparams"))
    paths.pick.write_text(json.dumps(picked))
    return paths


def test_the_first_40_lines_of_the_report_hold_the_verdict(tmp_path, tiny_data, params):
    paths = fake_project(tmp_path, tiny_data, params["model"])
    sweep = SweepCfg(methods=["hqs_l0", "magnitude"], macs_reductions=[0.5])
    write_report(paths, ReportCfg(threads=1, warmup=0, rounds=3, panel_images=1), sweep)
    head = "\n".join(paths.out.read_text().splitlines()[:40])
    for item in ("Recommended model: `hqs_l0-0.5`",  # the rule's choice (magnitude is cheaper but failed)
                 "**Rule** (params.yaml `pick`): the fewest Mparams", "at most 0.010 below the dense model's",
                 "**Test IoU:**", "**Measured speed-up over dense:**", "x PyTorch eager", "x ONNX Runtime",
                 f"PyTorch {torch.__version__}, ONNX Runtime {onnxruntime.__version__}", "batch 1 at 64x64",
                 "**File size:**", "MB as ONNX", "**Training data:** `synthetic`, 8 training images",
                 "Synthetic wires only", "**Why:** `hqs_l0-0.5` has the fewest Mparams",
                 "`magnitude-0.5` **failed**"):
        assert item in head, item
    test_line = next(line for line in head.splitlines() if line.startswith("- **Test IoU:**"))
    # the interval itself, not "(no interval: ...)"
    assert re.search(r"\(95% paired bootstrap interval over the 4 test images: [+-]\d\.\d{3} to [+-]\d\.\d{3}\)$",
                     test_line.rstrip(".")), test_line
    html = paths.html.read_text()
    assert html.index("Recommended model") < html.index("Every model")
    rows = json.loads(paths.metrics.read_text())
    dense, ship = rows["loss w (dense)"], rows["hqs_l0-0.5 fine-tuned"]
    assert dense["gmacs"] != 99.0 and 0 < ship["gmacs"] < dense["gmacs"]  # counted at 64x64, not read from records
    assert ship["onnx_mb"] < dense["onnx_mb"] and "eager_peak_mb" not in ship
    assert "Why ONNX Runtime can be slower than PyTorch" in paths.out.read_text()


def counts(tp: list[int], fp: list[int], fn: list[int]) -> dict[str, list[int]]:
    return {"tp": tp, "fp": fp, "fn": fn}


def test_the_iou_change_interval_is_paired_over_images():
    rng = np.random.default_rng(0)
    tp = rng.integers(50, 100, 30).tolist()
    dense = counts(tp, [40] * 30, [40] * 30)
    better = counts([t + 10 for t in tp], [40] * 30, [30] * 30)  # better on every image
    found = iou_change(dense, better)
    assert 0 < found["low"] <= found["change"] <= found["high"]
    assert found["change"] == pytest.approx(found["ship"] - found["dense"])
    assert iou_change(dense, dense)["change"] == 0
    one = iou_change(counts([5], [1], [1]), counts([6], [1], [1]))  # one image: no interval, the point
    assert one["low"] == one["high"] == one["change"] == pytest.approx(6 / 8 - 5 / 7)
    same = iou_change(dense, dense)  # no spread: the same rule
    assert same["low"] == same["high"] == 0




def test_the_interval_runs_on_the_oldest_scipy_pyproject_allows(monkeypatch):
    """scipy 1.11-1.14's bootstrap has no `rng` argument (pyproject allows scipy>=1.11)."""
    import pipeline.intervals

    real = pipeline.intervals.bootstrap

    def old_bootstrap(*args, **kwargs):
        if "rng" in kwargs:
            raise TypeError("bootstrap() got an unexpected keyword argument 'rng'")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline.intervals, "bootstrap", old_bootstrap)
    found = iou_change(counts([5, 9, 7], [1, 2, 1], [1, 0, 3]), counts([6, 9, 8], [1, 1, 1], [1, 0, 2]))
    assert found["low"] <= found["change"] <= found["high"]


def test_the_training_data_line_names_the_pretraining_and_never_claims_no_real_photo(tmp_path):
    manifest = {"source": "pld-uav", "splits": {"train": {"images": 80}, "val": {"images": 20}, "test": {"images": 20}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"pretrain": {"enabled": False}}))
    assert training_data(tmp_path, baseline) == "`pld-uav`, 80 training images (20 val, 20 test)"
    pretrain = {"enabled": True, "epochs": 3, "synthetic": {"n_train": 500, "renderer": "wires",
                                                            "backgrounds": "photos/site"}}
    baseline.write_text(json.dumps({"pretrain": pretrain}))
    assert training_data(tmp_path, baseline) == ("`pld-uav`, 80 training images (20 val, 20 test), after pretraining "
                                                 "on 500 synthetic images (`wires` wires drawn on the photos in "
                                                 "`photos/site`, 3 epochs)")
    manifest["source"] = "synthetic"  # e.g. wires drawn on real background photos: real photos were seen
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    line = training_data(tmp_path, baseline)
    assert "never seen a real labelled wire" in line and "real photo" not in line
    assert "drawn on the photos in `photos/site`" in line
