"""Gather every model the pipeline produced, with its figures, from the stage records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2

from pipeline.config import PAD_MULTIPLE, SweepCfg
from pipeline.curves import dvclive_curve
from pipeline.errors import PipelineError
from pipeline.selection import SCORE, failed

STUDIES = ("baseline", "augment", "loss")
ACCURACY = ("test/iou", "test/miou", "test/f1", "test/tol_f1", "val/iou", SCORE, "gmacs", "mparams")


def read_json(path: Path) -> dict[str, Any]:
    """A stage record; a missing or broken one names the stage to run."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read stage record ({err}); run the stage that writes it") from None


def sweep_runs(sweep: SweepCfg) -> list[str]:
    """The runs of the current sweep, sorted, named as dvc.yaml's matrix names their folders
    (`${item.method}-${item.target}`: DVC writes a number with str())."""
    return sorted({f"{method}-{target}" for method in sweep.methods for target in sweep.macs_reductions})


def gather(reports: Path, runs: list[str]) -> dict[str, Any]:
    """The records of the training studies and of the sweep's pruning and fine-tuning runs.

    Only `runs`: records of runs that left the sweep stay in reports/prune and
    reports/finetune (they are committed), but their models may be gone."""
    return {"studies": {stage: read_json(reports / f"{stage}.json") for stage in STUDIES},
            **{stage: {run: read_json(reports / stage / f"{run}.json") for run in runs}
               for stage in ("prune", "finetune")}}


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ACCURACY if key in row}


def model_rows(records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row per model: {name: {"kind", "run", accuracy and cost figures}}.

    kind: candidate | study | dense | pruned | final; `run` names the pruning run
    (<method>-<target>) that pruned and final rows belong to; `failed` (pruned and final rows)
    whether that run failed (see mark_failed).
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
    mark_failed(rows)
    return rows


def mark_failed(rows: dict[str, dict[str, Any]]) -> None:
    """Set `failed` on both rows of every pruning run whose final val score (fine-tuned, else
    right after removal) fails pipeline.selection.failed against the dense model's."""
    for name, row in rows.items():
        if SCORE not in row and row["kind"] in ("dense", "pruned", "final"):
            raise PipelineError(f"{name}: its record has no {SCORE} (written before the selection score "
                                f"existed); run its stage again")
    dense = next(r for r in rows.values() if r["kind"] == "dense")[SCORE]
    ends = {}  # run -> its final val score; a fine-tuned row comes after its run's pruned row
    for row in rows.values():
        if row["kind"] in ("pruned", "final"):
            ends[row["run"]] = row[SCORE]
    for row in rows.values():
        if row["kind"] in ("pruned", "final"):
            row["failed"] = failed(ends[row["run"]], dense)


def evaluation_size(data: Path) -> tuple[int, int]:
    """The most common test image size, padded to a multiple of 32 as in evaluation."""
    sizes = Counter()
    for image in sorted((data / "test" / "images").glob("*.png")):
        shape = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape
        sizes[tuple(-(-s // PAD_MULTIPLE) * PAD_MULTIPLE for s in shape[:2])] += 1
    if not sizes:
        raise PipelineError(f"{data / 'test' / 'images'}: no test images")
    return sizes.most_common(1)[0][0]


def curves(logs: Path, metric: str, runs: list[str] | None = None) -> dict[str, list[float]]:
    """{run: per-epoch values} of a DVCLive metric for `runs` (log folders under `logs`), or
    for every run found there if None."""
    if runs is None:
        found = logs.rglob(f"plots/metrics/{metric}.tsv")
        runs = sorted(str(tsv.parents[len(Path(metric).parts) + 1].relative_to(logs)) for tsv in found)
    values = {run: [value for _, value in dvclive_curve(logs / run, metric)] for run in runs}
    return {run: curve for run, curve in values.items() if curve}
