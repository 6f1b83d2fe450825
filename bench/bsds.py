"""The field's own protocol beside our strict pixel scores: BSDS boundary matching (ODS, OIS,
AP) as PLD-UAV's authors report it, computed by pyEdgeEval.

Per image, the line probability is thresholded at `THRESHOLDS` levels, each binary map is
thinned, and its pixels are matched one-to-one to the ground-truth line pixels within
`MAX_DIST` of the image diagonal (the CSA assignment of the BSDS benchmark). The four
per-threshold counts are what a benchmark record keeps, so ODS/OIS/AP can be re-aggregated
over any set of images without re-running the matching (the expensive part).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

THRESHOLDS = 99  # BSDS's default: 99 levels evenly spaced in (0, 1)
MAX_DIST = 0.0075  # of the image diagonal, as PLD-UAV's authors use


def boundary_counts(prob: np.ndarray, truth: np.ndarray, thresholds: int = THRESHOLDS,
                    max_dist: float = MAX_DIST) -> list[list[int]]:
    """[count_r, sum_r, count_p, sum_p] per threshold for one image at its own size.

    prob: HxW line probability in [0, 1]; truth: HxW bool line pixels (ignore pixels False).
    count_r of sum_r true line pixels are matched; count_p of sum_p predicted ones are.
    """
    from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold
    from pyEdgeEval.common.utils import check_thresholds

    if prob.shape != truth.shape:
        raise ValueError(f"prediction {prob.shape} and ground truth {truth.shape} differ in size")
    levels = check_thresholds(thresholds)
    counts = evaluate_boundaries_threshold(levels, prob.astype(np.float64), truth.astype(bool), max_dist=max_dist)
    return [[int(v) for v in row] for row in counts]


def ods_ois_ap(per_image: dict[str, list[list[int]]], thresholds: int = THRESHOLDS) -> dict[str, float]:
    """ODS (best F1 at one threshold for the whole set), OIS (best threshold per image) and
    AP, from the per-image counts of `boundary_counts`, keyed by image id."""
    import importlib
    from functools import partial
    from unittest import mock

    from pyEdgeEval.utils import track_progress

    # its progress bar writes to the sys.stdout of import time (a default argument), which may
    # be closed by now (e.g. a test's captured output): give it a buffer of its own
    metrics = importlib.import_module("pyEdgeEval.common.binary_label.calculate_metrics")
    samples = [{"name": name, "counts": counts} for name, counts in sorted(per_image.items())]
    with mock.patch.object(metrics, "track_progress", partial(track_progress, file=io.StringIO())):
        _, _, overall = metrics.calculate_metrics(eval_single=_stored, thresholds=thresholds, samples=samples,
                                                  nproc=1)
    return {"ods": float(overall["ODS_f1"]), "ois": float(overall["OIS_f1"]), "ap": float(overall["AP"]),
            "ods_threshold": float(overall["ODS_threshold"])}


def _stored(sample: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """calculate_metrics' per-image step: the counts were computed already."""
    return tuple(np.asarray(row, dtype=np.float64) for row in sample["counts"])


def split_boundary_counts(model: Any, data: Any, split: str = "test") -> dict[str, list[list[int]]]:
    """`boundary_counts` of every image of a prepared split, predicted at the image's own size."""
    from pipeline.labels import LINE
    from pipeline.scoring import split_probabilities

    return {name: boundary_counts(prob, mask == LINE) for name, prob, mask in split_probabilities(model, data, split)}
