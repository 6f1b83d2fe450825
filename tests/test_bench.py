"""The benchmark's bookkeeping and statistics (the benchmark itself runs from bench/, not here)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.pldu import ROOT, load_config, steps_to_recover
from bench.stats import paired_bca, paired_difference, summarise, table


def counts(tp: list[int], fp: list[int], fn: list[int]) -> dict[str, list[int]]:
    n = len(tp)
    return {"tp": tp, "fp": fp, "fn": fn, "tol_pred_hit": tp, "tol_pred": [t + f for t, f in zip(tp, fp, strict=True)],
            "tol_true_hit": tp, "tol_true": [t + f for t, f in zip(tp, fn, strict=True)], "names": list(range(n))}


def test_the_preset_validates():
    bench, sections = load_config(ROOT / "bench" / "pldu.yaml")
    assert bench.seeds == [0, 1, 2] and set(bench.methods) == {"hqs_l0", "magnitude", "slimming", "random"}
    assert bench.macs_reductions == [0.5, 0.75] and sections["prepare"].source == "pld-uav"


def test_steps_to_recover():
    curve = [(9, 0.30), (19, 0.36), (29, 0.41)]
    assert steps_to_recover(0.2, curve, 0.35) == 20
    assert steps_to_recover(0.36, curve, 0.35) == 0  # already within after removal
    assert steps_to_recover(0.2, curve, 0.50) is None  # never within the budget


def test_paired_difference_of_identical_runs_is_exactly_zero():
    a = counts([10, 20, 5, 7], [3, 1, 2, 0], [4, 2, 6, 1])
    out = paired_difference([a, a], [a, a], n_boot=200)
    assert out["mean"] == 0 and out["ci95"] == [0.0, 0.0]


def test_paired_difference_sees_a_consistent_gain():
    rng = np.random.default_rng(0)
    tp = rng.integers(50, 100, 20).tolist()
    base = counts(tp, [30] * 20, [30] * 20)
    better = counts(tp, [10] * 20, [30] * 20)  # fewer false alarms on every image
    out = paired_difference([better], [base], n_boot=500)
    assert out["mean"] > 0 and out["ci95"][0] > 0
    worse = paired_difference([base], [better], n_boot=500)
    assert worse["mean"] == pytest.approx(-out["mean"]) and worse["ci95"][1] < 0


def run(method: str, seed: int, fp: int) -> dict:
    c = counts([50] * 4, [fp] * 4, [20] * 4)
    return {"method": method, "macs_reduction": 0.5, "seed": seed, "achieved_reduction": 0.5, "gmacs": 1.0,
            "mparams": 2.0, "after_counts": c, "final_counts": c, "steps_to_recover": 30 if fp < 30 else None,
            "finetune_epochs": 9, "steps_per_epoch": 10}


def test_summary_rows_and_table():
    dense = {s: {"test_counts": counts([50] * 4, [20] * 4, [20] * 4), "metrics": {"val/iou": 0.4}, "epochs": 30,
                 "gmacs": 2.0, "mparams": 10.0} for s in (0, 1)}
    runs = [run("hqs_l0", s, 10) for s in (0, 1)] + [run("random", s, 40) for s in (0, 1)]
    summary = summarise(dense, runs, n_boot=200)
    hqs, rnd = summary["rows"]
    assert hqs["iou_final"]["mean"] == pytest.approx(50 / 80) and hqs["iou_final"]["std"] == 0
    assert hqs["vs_dense"]["mean"] == pytest.approx(50 / 80 - 50 / 90)
    assert rnd["vs_hqs_l0"]["mean"] == pytest.approx(50 / 110 - 50 / 80) and "vs_hqs_l0" not in hqs
    assert rnd["recovered"] == 0 and hqs["steps_to_recover"] == [30, 30]
    text = table(summary)
    assert "| random | 0.50 |" in text and "never, never (90)" in text


def test_bca_interval_excludes_zero_for_a_consistent_gain_and_pools_seeds():
    rng = np.random.default_rng(1)
    tp = rng.integers(50, 100, 20).tolist()
    base, better = counts(tp, [30] * 20, [30] * 20), counts(tp, [10] * 20, [30] * 20)
    out = paired_bca([better, better], [base, base], n_resamples=999)
    pooled = (2 * sum(tp)) / (2 * sum(tp) + 2 * 200 + 2 * 600)  # the seeds' counts summed, then the IoU
    assert out["mean"] == pytest.approx(pooled - (2 * sum(tp)) / (2 * sum(tp) + 2 * 600 + 2 * 600))
    assert out["method"] == "BCa" and 0 < out["ci95"][0] < out["mean"] < out["ci95"][1]
    flipped = paired_bca([base], [better], n_resamples=999)
    assert flipped["ci95"][1] < 0


def test_bca_pairs_images_by_id_not_by_position():
    a = counts([10, 20, 30, 40], [1, 2, 3, 4], [4, 3, 2, 1])
    shuffled = {key: list(reversed(value)) for key, value in a.items()}  # same images, other order
    out = paired_bca([shuffled], [a], n_resamples=199)
    assert out["mean"] == 0 and out["ci95"] == [0.0, 0.0]
    missing = {key: value[:3] for key, value in a.items()}
    with pytest.raises(ValueError, match="do not align"):
        paired_bca([missing], [a], n_resamples=199)
