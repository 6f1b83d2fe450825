"""Paired BCa bootstrap intervals over images, shared by the report's verdict
(pipeline/report/verdict.py) and the benchmark (bench/stats.py): both models' per-image
counts are resampled alike, and the score is recomputed from the resampled images' summed
counts (a corpus score, the way every other figure is made)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from pipeline.metrics import ratio

Counts = dict[str, np.ndarray]


def line_iou(counts: Counts) -> np.ndarray:
    """Strict line IoU of tp/fp/fn summed over images (the last axis)."""
    hits = np.asarray(counts["tp"]).sum(-1)
    return ratio(hits, hits + np.asarray(counts["fp"]).sum(-1) + np.asarray(counts["fn"]).sum(-1))


def paired_bca(mine: Counts, theirs: Counts, score: Callable[[Counts], np.ndarray] = line_iou,
               n_resamples: int = 4999, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """`score` of `mine` minus that of `theirs` (per-image counts of the same images, in the
    same order) with a `level` BCa interval that resamples images. `score` maps counts of
    shape (..., images) to scores of shape (...).

    The one degenerate rule: with fewer than 2 images, or when the resampled differences do
    not vary (identical models, identical images), BCa is undefined and the interval is the
    point itself."""
    mine = {key: np.asarray(value) for key, value in mine.items()}
    theirs = {key: np.asarray(value) for key, value in theirs.items()}
    images = len(next(iter(mine.values())))

    def difference(index: np.ndarray, axis: int = -1) -> np.ndarray:  # noqa: ARG001 - scipy's protocol
        index = index.astype(int)
        return score({k: v[index] for k, v in mine.items()}) - score({k: v[index] for k, v in theirs.items()})

    every = np.arange(images)
    point = float(difference(every))
    low = high = point
    if images >= 2:
        with warnings.catch_warnings():  # the degenerate case is handled below
            warnings.simplefilter("ignore")
            # random_state, not rng: rng needs scipy >= 1.15 and pyproject allows 1.11
            result = bootstrap((every,), difference, vectorized=True, paired=True, n_resamples=n_resamples,
                               confidence_level=level, method="BCa", random_state=np.random.default_rng(seed))
        if np.ptp(result.bootstrap_distribution):
            low, high = (float(bound) for bound in result.confidence_interval)
    return {"mean": point, "ci95": [low, high], "method": "BCa", "images": images}
