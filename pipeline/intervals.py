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

    def difference(index: np.ndarray) -> np.ndarray:
        return score({k: v[index] for k, v in mine.items()}) - score({k: v[index] for k, v in theirs.items()})

    return _bca(difference, len(next(iter(mine.values()))), n_resamples, seed, level)


def bca(counts: Counts, score: Callable[[Counts], np.ndarray] = line_iou, n_resamples: int = 4999,
        seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """`score` of one model's per-image counts with a `level` BCa interval that resamples
    images (the degenerate rule of paired_bca)."""
    counts = {key: np.asarray(value) for key, value in counts.items()}
    return _bca(lambda index: score({k: v[index] for k, v in counts.items()}), len(next(iter(counts.values()))),
                n_resamples, seed, level)


def _bca(statistic: Callable[[np.ndarray], np.ndarray], images: int, n_resamples: int, seed: int, level: float
         ) -> dict[str, Any]:
    """{"mean": statistic of every image, "ci95": its BCa interval, ...}; `statistic` maps
    image indices (..., images) to values (...)."""
    every = np.arange(images)
    point = float(statistic(every))
    low = high = point
    if images >= 2:
        with warnings.catch_warnings():  # the degenerate case is handled below
            warnings.simplefilter("ignore")
            # random_state, not rng: rng needs scipy >= 1.15 and pyproject allows 1.11
            result = bootstrap((every,), lambda index, axis=-1: statistic(index.astype(int)), vectorized=True,
                               paired=True, n_resamples=n_resamples, confidence_level=level, method="BCa",
                               random_state=np.random.default_rng(seed))
        if np.ptp(result.bootstrap_distribution):
            low, high = (float(bound) for bound in result.confidence_interval)
    return {"mean": point, "ci95": [low, high], "method": "BCa", "images": images}
