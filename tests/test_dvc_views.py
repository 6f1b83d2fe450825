"""What people read through DVC: `dvc metrics show` (reports/summary.json only, narrow),
`dvc plots show` (two charts), and the shared cache (push to a remote, pull in a clone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.report.views import CURVE_FIELD, SUMMARY, curve_rows, summary
from pipeline.selection import SCORE
from tests.conftest import GIT, ROOT, run

DVC = [sys.executable, "-m", "dvc"]
MAX_WIDTH = 160


def rows() -> dict[str, dict]:
    """Report rows (pipeline.report.collect.model_rows + timing): a dense model, a fine-tuned
    run to ship and a failed one."""
    dense = {
        "kind": "dense",
        "test/iou": 0.40,
        SCORE: 0.42,
        "gmacs": 4.0,
        "mparams": 12.0,
        "eager_speedup": 1.0,
        "onnx_speedup": 1.0,
    }
    return {
        "baseline Unet-r18": {**dense, "kind": "candidate", "test/iou": 0.1},
        "loss dice (dense)": dense,
        "a-0.5 after removal": {**dense, "kind": "pruned", "run": "a-0.5", "failed": False},
        "a-0.5 fine-tuned": {
            "kind": "final",
            "run": "a-0.5",
            "failed": False,
            "test/iou": 0.37,
            SCORE: 0.41,
            "gmacs": 1.0,
            "mparams": 3.0,
            "eager_speedup": 1.8,
            "onnx_speedup": 1.5,
        },
        "b-0.5 after removal": {**dense, "kind": "pruned", "run": "b-0.5", "failed": True},
        "b-0.5 fine-tuned": {**dense, "kind": "final", "run": "b-0.5", "failed": True, SCORE: 0.02},
    }


def test_summary_has_at_most_ten_short_numeric_keys():
    figures = summary(rows(), "a-0.5")
    assert list(figures) == list(SUMMARY) and len(figures) <= 10
    for key, value in figures.items():
        assert len(key) <= 12 and " " not in key, key
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)


def test_summary_compares_the_shipped_model_with_dense():
    figures = summary(rows(), "a-0.5")
    assert figures["ship_iou"] == 0.37 and figures["dense_iou"] == 0.40
    assert abs(figures["iou_change"] - -0.03) < 1e-9 and abs(figures["val_drop"] - 0.01) < 1e-9
    assert figures["macs_cut"] == 0.75 and figures["speedup"] == 1.8 and figures["failed_runs"] == 1
    nothing_pruned = summary(rows(), None)
    assert nothing_pruned["ship_iou"] == 0.40 and nothing_pruned["iou_change"] == 0


def test_the_committed_summary_is_the_summary_dvc_lists():
    committed = json.loads((ROOT / "reports" / "summary.json").read_text())
    assert list(committed) == list(SUMMARY)


def test_dvc_metrics_show_fits_in_160_columns():
    done = subprocess.run(
        [*DVC, "metrics", "show"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    lines = done.stdout.splitlines()
    widest = max(len(line) for line in lines)
    assert widest <= MAX_WIDTH, f"`dvc metrics show` is {widest} columns wide:\n{done.stdout[:1000]}"
    assert "reports/summary.json" in done.stdout and "ship_iou" in lines[0], done.stdout


def test_dvc_yaml_declares_only_the_summary_as_metrics_and_records_as_outputs():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    metrics = [
        next(iter(m)) if isinstance(m, dict) else m
        for stage in dvc["stages"].values()
        for m in stage.get("metrics", [])
    ]
    assert metrics + dvc.get("metrics", []) == ["reports/summary.json"]
    assert not any("plots" in stage for stage in dvc["stages"].values())  # only the top-level ones
    outs = {
        next(iter(o)): o[next(iter(o))]
        for stage in dvc["stages"].values()
        for o in stage["outs"]
        if isinstance(o, dict)
    }
    for record in (
        "reports/baseline.json",
        "reports/prune/${item.method}-${item.target}.json",
        "reports/report.json",
        "reports/finetune/${item.method}-${item.target}.json",
        "reports/curves.json",
    ):
        assert outs[record] == {"cache": False}, record  # committed to git, still a stage output


def test_dvc_plots_show_draws_two_charts_with_model_names():
    shown = json.loads(
        subprocess.run([*DVC, "plots", "show", "--json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    )["data"]
    assert sorted(shown) == ["test_iou_vs_cost", "val_score_by_model"]
    curves = shown["val_score_by_model"][0]["content"]
    assert curves["encoding"]["color"]["field"] == "model" and curves["encoding"]["y"]["field"] == CURVE_FIELD
    assert len({row["model"] for row in curves["data"]["values"]}) >= 2  # overlaid: one line per model
    scatter = shown["test_iou_vs_cost"][0]["content"]
    assert {"field": "model", "type": "nominal"} in scatter["encoding"]["tooltip"]
    assert (scatter["encoding"]["x"]["field"], scatter["encoding"]["y"]["field"]) == ("gmacs", "test_iou")


def write_curve(folder: Path, values: list[float]) -> None:
    """A DVCLive curve of the selection score, as `fit` logs it."""
    tsv = folder / "plots" / "metrics" / f"{SCORE}.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\t" + Path(SCORE).name + "\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))


def test_curves_are_rows_of_model_epoch_and_val_score(tmp_path: Path):
    write_curve(tmp_path / "loss" / "dice", [0.3, 0.4])
    write_curve(tmp_path / "finetune" / "a-0.5", [0.1, 0.2, 0.35])
    write_curve(tmp_path / "finetune" / "gone-0.5", [0.9])  # a run that left the sweep
    found = curve_rows(rows(), tmp_path, "dice", ["a-0.5", "b-0.5"])
    assert found[0] == {"model": "loss dice (dense)", "epoch": 1, CURVE_FIELD: 0.3}
    assert [(r["model"], r["epoch"], r[CURVE_FIELD]) for r in found[2:]] == [
        ("a-0.5 fine-tuned", 1, 0.1),
        ("a-0.5 fine-tuned", 2, 0.2),
        ("a-0.5 fine-tuned", 3, 0.35),
    ]
    committed = json.loads((ROOT / "reports" / "curves.json").read_text())
    assert committed and all(set(row) == {"model", "epoch", CURVE_FIELD} for row in committed)


def test_outputs_round_trip_through_a_local_folder_remote(tmp_path: Path):
    """README "Sharing models": push the cache to a folder remote; a fresh clone pulls the
    exact bytes instead of rebuilding."""
    project, clone, remote = tmp_path / "project", tmp_path / "clone", tmp_path / "remote"
    project.mkdir()
    run(["git", "init", "-q"], project)
    run([*DVC, "init", "-q"], project)
    make = "import os; open('model.bin', 'wb').write(os.urandom(4096))"  # a rebuild would differ
    run([*DVC, "stage", "add", "-q", "-n", "train", "-o", "model.bin", f'python -c "{make}"'], project)
    run([*DVC, "repro", "-q"], project)
    run([*DVC, "remote", "add", "-d", "shared", str(remote)], project)
    run([*GIT, "add", "-A"], project)
    run([*GIT, "commit", "-qm", "train"], project)
    run([*DVC, "push", "-q"], project)
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "model.bin").exists()
    run([*DVC, "pull", "-q"], clone)
    assert (clone / "model.bin").read_bytes() == (project / "model.bin").read_bytes()
    assert "up to date" in run([*DVC, "status"], clone)
