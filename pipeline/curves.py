"""Training curves as DVCLive logs them (what `fit` writes), read back by step."""

from __future__ import annotations

import csv
from pathlib import Path


def dvclive_curve(run: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a metric (e.g. val/iou) in the DVCLive log folder `run`; [] if absent."""
    tsv = run / "plots" / "metrics" / f"{metric}.tsv"
    if not tsv.exists():
        return []
    with tsv.open() as f:  # a resumed run logs the killed epoch's steps again: the last value counts
        by_step = {int(row["step"]): float(row[Path(metric).name]) for row in csv.DictReader(f, delimiter="\t")}
    return sorted(by_step.items())
