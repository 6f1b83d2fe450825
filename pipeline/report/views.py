"""What DVC shows of the report: reports/summary.json, the only metrics file (`dvc metrics show`,
`dvc exp show`), and reports/curves.json, the val score per epoch per model (`dvc plots show`).

The summary is a handful of numbers that decide what to ship, under short names: a table of
every model's figures is reports/report.json, which no DVC view reads (as metrics it made thousands of columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.report.collect import curves
from pipeline.selection import SCORE

# key -> what it holds (README "Reading results with DVC" lists the same); <= 12 characters, no
# spaces, numbers only: `dvc metrics show` stays under 160 columns
SUMMARY = {
    "dense_iou": "test IoU of the dense model",
    "ship_iou": "test IoU of the model to ship",
    "iou_change": "ship_iou - dense_iou (negative: the shipped model is worse)",
    "val_drop": f"dense {SCORE} - shipped {SCORE} (the figure models are chosen by)",
    "ship_gmacs": "GMACs per image of the model to ship (at the size latency is timed at)",
    "macs_cut": "1 - ship_gmacs / dense GMACs",
    "ship_mparams": "millions of parameters of the model to ship",
    "speedup": "PyTorch eager latency of dense / shipped (median paired ratio)",
    "onnx_speedup": "the same in ONNX Runtime",
    "failed_runs": "pruning runs of the sweep that failed (pipeline.selection.failed)",
}
CURVE_FIELD = SCORE.replace("/", "_")  # val_iou_tuned: a plain field name for Vega-Lite


def _dense(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return next(row for row in rows.values() if row["kind"] == "dense")


def summary(rows: dict[str, dict[str, Any]], ship: str | None) -> dict[str, float | int]:
    """The SUMMARY figures of the fine-tuned model of pruning run `ship` (<method>-<target>)
    against the dense model; the dense model itself when `ship` is None (the pick stage chose
    the dense model, e.g. because no fine-tuned run qualified or none ran).

    `rows` are the report's (pipeline.report.collect.model_rows) with the timing attached."""
    dense = _dense(rows)
    shipped = rows[f"{ship} fine-tuned"] if ship else dense
    return {
        "dense_iou": dense["test/iou"],
        "ship_iou": shipped["test/iou"],
        "iou_change": shipped["test/iou"] - dense["test/iou"],
        "val_drop": dense[SCORE] - shipped[SCORE],
        "ship_gmacs": shipped["gmacs"],
        "macs_cut": 1 - shipped["gmacs"] / dense["gmacs"],
        "ship_mparams": shipped["mparams"],
        "speedup": shipped["eager_speedup"],
        "onnx_speedup": shipped["onnx_speedup"],
        "failed_runs": sum(1 for row in rows.values() if row["kind"] == "final" and row.get("failed")),
    }


def curve_rows(rows: dict[str, dict[str, Any]], logs: Path, dense_run: str, runs: list[str]) -> list[dict[str, Any]]:
    """[{"model", "epoch", CURVE_FIELD}] of the dense model (its `loss` stage run `dense_run`)
    and of every fine-tuned run in `runs`, named as the report's rows; epochs count from 1."""
    dense_name = next(name for name, row in rows.items() if row["kind"] == "dense")
    found = {dense_name: curves(logs / "loss", SCORE, [dense_run]).get(dense_run, [])}
    for run, values in curves(logs / "finetune", SCORE, runs).items():
        found[f"{run} fine-tuned"] = values
    return [
        {"model": model, "epoch": epoch, CURVE_FIELD: value}
        for model, values in found.items()
        for epoch, value in enumerate(values, start=1)
    ]


def cost_points(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per model for the accuracy-vs-cost plot; the model name shows in the tooltip."""
    return [
        {
            "model": name,
            "kind": row["kind"],
            "failed": bool(row.get("failed")),
            "gmacs": row["gmacs"],
            "test_iou": row["test/iou"],
        }
        for name, row in rows.items()
    ]
