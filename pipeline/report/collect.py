"""Gather every model the pipeline produced, with its figures, from the stage records."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2

from pipeline.config import PAD_MULTIPLE
from pipeline.errors import PipelineError

STUDIES = ("baseline", "augment", "loss")
ACCURACY = ("test/iou", "test/miou", "test/f1", "test/tol_f1", "val/iou", "gmacs", "mparams")


def read_json(path: Path) -> dict[str, Any]:
    """A stage record; a missing or broken one names the stage to run."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read stage record ({err}); run the stage that writes it") from None


def read_folder(folder: Path) -> dict[str, dict[str, Any]]:
    """{run name: record} of every JSON in `folder` (one per method and MAC target)."""
    return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))}


def gather(reports: Path) -> dict[str, Any]:
    """The records of every training, pruning and fine-tuning run."""
    return {"studies": {stage: read_json(reports / f"{stage}.json") for stage in STUDIES},
            "prune": read_folder(reports / "prune"), "finetune": read_folder(reports / "finetune")}


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ACCURACY if key in row}


def model_rows(records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row per model: {name: {"kind", "run", accuracy and cost figures}}.

    kind: candidate | study | dense | pruned | final; `run` names the pruning run
    (<method>-<target>) that pruned and final rows belong to.
    """
    studies = records["studies"]
    dense = studies["loss"]["winner"]
    rows = {f"baseline {name}": {"kind": "candidate", "network": row.get("network"), **_figures(row)}
            for name, row in studies["baseline"]["candidates"].items()}
    for stage in STUDIES[1:]:
        winner = studies[stage]["winner"]
        kind = "dense" if stage == "loss" else "study"
        rows[f"{stage} {winner}" + (" (dense)" if kind == "dense" else "")] = {
            "kind": kind, **_figures(studies[stage]["candidates"][winner])}
    for run, record in records["prune"].items():
        rows[f"{run} after removal"] = {"kind": "pruned", "run": run,
                                         **_figures({**record["after_removal"], **record["pruned"]})}
        final = records["finetune"].get(run)
        if final:
            rows[f"{run} fine-tuned"] = {"kind": "final", "run": run, "epochs": final["epochs"],
                                          **_figures(final["final"])}
    if not any(row["kind"] == "dense" for row in rows.values()) or dense is None:
        raise PipelineError("reports/loss.json: no winner recorded")
    return rows


def evaluation_size(data: Path) -> tuple[int, int]:
    """The most common test image size, padded to a multiple of 32 as in evaluation."""
    sizes = Counter()
    for image in sorted((data / "test" / "images").glob("*.png")):
        shape = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape
        sizes[tuple(-(-s // PAD_MULTIPLE) * PAD_MULTIPLE for s in shape[:2])] += 1
    if not sizes:
        raise PipelineError(f"{data / 'test' / 'images'}: no test images")
    return sizes.most_common(1)[0][0]


def dvclive_curve(run: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a metric (e.g. val/iou) in the DVCLive log folder `run`; [] if absent."""
    tsv = run / "plots" / "metrics" / f"{metric}.tsv"
    if not tsv.exists():
        return []
    with tsv.open() as f:  # a resumed run logs the killed epoch's steps again: the last value counts
        by_step = {int(row["step"]): float(row[Path(metric).name]) for row in csv.DictReader(f, delimiter="\t")}
    return sorted(by_step.items())


def curves(logs: Path, metric: str) -> dict[str, list[float]]:
    """{run: per-epoch values} of a DVCLive metric for every run (log folder) under `logs`."""
    runs = sorted(tsv.parents[len(Path(metric).parts) + 1] for tsv in logs.rglob(f"plots/metrics/{metric}.tsv"))
    return {str(run.relative_to(logs)): [value for _, value in dvclive_curve(run, metric)] for run in runs}
