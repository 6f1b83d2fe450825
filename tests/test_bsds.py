"""BSDS boundary scores (bench/bsds.py): tolerant where strict pixel IoU is not, and strict
where the prediction is really off."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyEdgeEval")

from bench.bsds import boundary_counts, ods_ois_ap  # noqa: E402

LEVELS = 9  # the protocol uses 99; the matching is what is tested, not the grid


def _lines() -> np.ndarray:
    truth = np.zeros((60, 80), bool)
    truth[30, 5:75] = True
    truth[10:50, 40] = True
    return truth


def _scores(prob: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return ods_ois_ap({"a": boundary_counts(prob, truth, LEVELS)}, LEVELS)


def test_a_perfect_prediction_scores_one():
    truth = _lines()
    assert _scores(np.where(truth, 0.9, 0.0), truth)["ods"] == pytest.approx(1.0)


def test_a_one_pixel_shift_is_within_the_tolerance_but_strict_iou_is_zero():
    truth = np.zeros((100, 100), bool)
    truth[50, 10:90] = True  # diagonal 141 px: 0.0075 of it is ~1.06 px
    shifted = np.roll(truth, 1, axis=0)
    assert (shifted & truth).sum() == 0  # strict pixel IoU would be 0
    assert _scores(np.where(shifted, 0.9, 0.0), truth)["ods"] == pytest.approx(1.0)


def test_a_far_prediction_scores_low_and_ois_is_at_least_ods():
    truth = _lines()
    far = np.roll(np.where(truth, 0.9, 0.0), 12, axis=0)
    scores = _scores(far, truth)
    assert scores["ods"] < 0.6 and scores["ap"] < 0.6
    both = ods_ois_ap({"a": boundary_counts(far, truth, LEVELS),
                       "b": boundary_counts(np.where(truth, 0.6, 0.0), truth, LEVELS)}, LEVELS)
    assert both["ois"] >= both["ods"] - 1e-9


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        boundary_counts(np.zeros((10, 12)), np.zeros((12, 10), bool), LEVELS)
