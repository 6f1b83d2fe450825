"""The benchmark's statistics: mean ± std over seeds, and paired bootstrap confidence
intervals over test images (the test set is small, so seed spread alone says too little)."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from pipeline import intervals
from pipeline.scoring import COUNTS, scores


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def seed_summed_counts(runs: list[dict[str, list]], names: list[str]) -> dict[str, np.ndarray]:
    """Each image's counts summed over the runs (seeds), in the order of `names`. Every run
    must hold exactly these image ids: a bootstrap over misaligned images pairs the wrong ones."""
    total = {key: np.zeros(len(names), dtype=np.int64) for key in COUNTS}
    for run in runs:
        if sorted(run["names"]) != sorted(names) or len(run["names"]) != len(names):
            raise ValueError(f"per-image counts do not align: {len(run['names'])} images "
                             f"vs {len(names)}, e.g. {sorted(set(run['names']) ^ set(names))[:3]}")
        position = {name: i for i, name in enumerate(run["names"])}
        order = [position[name] for name in names]
        for key in COUNTS:
            total[key] += np.asarray(run[key], dtype=np.int64)[order]
    return total


def paired_bca(runs: list[dict[str, list]], refs: list[dict[str, list]], metric: str = "iou",
               n_resamples: int = 4999, seed: int = 0) -> dict[str, Any]:
    """`metric` of `runs` minus that of `refs` on the same test images, with a 95 % BCa
    interval (pipeline.intervals.paired_bca) that resamples images, each image's counts summed
    over the seeds first: the corpus score of the pooled seeds, the way every other figure is made."""
    names = sorted(runs[0]["names"])
    return intervals.paired_bca(seed_summed_counts(runs, names), seed_summed_counts(refs, names),
                                lambda counts: scores(counts)[metric], n_resamples, seed)
