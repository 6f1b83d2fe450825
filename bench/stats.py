"""The benchmark's statistics: mean ± std over seeds, and paired bootstrap confidence
intervals over test images (the test set is small, so seed spread alone says too little)."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.scoring import COUNTS, scores  # noqa: E402


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def paired_difference(runs: list[dict[str, list[int]]], refs: list[dict[str, list[int]]], n_boot: int,
                      seed: int = 0) -> dict[str, float]:
    """Test IoU of `runs` minus `refs` (paired by seed, same test images), averaged over seeds,
    with a 95 % percentile bootstrap CI that resamples test images (the same resample for all)."""
    n_images = len(runs[0]["tp"])
    picks = np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))
    every = np.arange(n_images)[None]

    def iou(counts: dict[str, list[int]], idx: np.ndarray) -> np.ndarray:
        return scores({key: np.asarray(counts[key])[idx] for key in COUNTS})["iou"]

    point = np.mean([iou(r, every) - iou(f, every) for r, f in zip(runs, refs, strict=True)])
    boot = np.mean([iou(r, picks) - iou(f, picks) for r, f in zip(runs, refs, strict=True)], axis=0)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(point), "ci95": [float(low), float(high)]}


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
    interval (scipy.stats.bootstrap) that resamples images, each image's counts summed over
    the seeds first: the corpus score of the pooled seeds, the way every other figure is made."""
    from scipy.stats import bootstrap

    names = sorted(runs[0]["names"])
    mine, theirs = seed_summed_counts(runs, names), seed_summed_counts(refs, names)

    def difference(index: np.ndarray) -> float:
        index = index.astype(int)
        return float(scores({k: v[index] for k, v in mine.items()})[metric]
                     - scores({k: v[index] for k, v in theirs.items()})[metric])

    every = np.arange(len(names))
    with warnings.catch_warnings():  # the degenerate case is handled below
        warnings.simplefilter("ignore")
        result = bootstrap((every,), difference, vectorized=False, paired=True, n_resamples=n_resamples,
                           confidence_level=0.95, method="BCa", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    point = difference(every)
    if not np.ptp(result.bootstrap_distribution):  # no spread (identical models): BCa is undefined, the CI is the point
        low = high = point
    return {"mean": point, "ci95": [float(low), float(high)], "method": "BCa", "images": len(names)}


def summarise(dense: dict[int, dict[str, Any]], runs: list[dict[str, Any]], n_boot: int,
              reference: str = "hqs_l0") -> dict[str, Any]:
    """One row per (method, MAC target) over seeds; differences to dense and to `reference`."""
    seeds = sorted(dense)
    by_key = {(r["method"], r["macs_reduction"], r["seed"]): r for r in runs}
    rows = []
    for method, target in dict.fromkeys((r["method"], r["macs_reduction"]) for r in runs):
        mine = [by_key[(method, target, s)] for s in seeds if (method, target, s) in by_key]
        have = [r["seed"] for r in mine]
        final = [scores(r["final_counts"]) for r in mine]
        steps = [r["steps_to_recover"] for r in mine]
        row = {
            "method": method, "macs_reduction": target, "seeds": have,
            "achieved_reduction": mean_std([r["achieved_reduction"] for r in mine]),
            "gmacs": mean_std([r["gmacs"] for r in mine]), "mparams": mean_std([r["mparams"] for r in mine]),
            "iou_after_removal": mean_std([float(scores(r["after_counts"])["iou"]) for r in mine]),
            "iou_final": mean_std([float(f["iou"]) for f in final]),
            "iou_final_per_seed": [round(float(f["iou"]), 4) for f in final],
            "iou_after_removal_per_seed": [round(float(scores(r["after_counts"])["iou"]), 4) for r in mine],
            "tol_f1_final": mean_std([float(f["tol_f1"]) for f in final]),
            "steps_to_recover": steps, "recovered": sum(s is not None for s in steps),
            "budget_steps": [r["finetune_epochs"] * (r["steps_per_epoch"] or 0) for r in mine],
            "vs_dense": paired_difference([r["final_counts"] for r in mine],
                                          [dense[s]["test_counts"] for s in have], n_boot),
        }
        refs = [by_key.get((reference, target, s)) for s in have]
        if method != reference and all(refs):
            row[f"vs_{reference}"] = paired_difference([r["final_counts"] for r in mine],
                                                       [r["final_counts"] for r in refs], n_boot)
        rows.append(row)
    dense_scores = [scores(dense[s]["test_counts"]) for s in seeds]
    return {
        "dense": {"seeds": seeds, "iou": mean_std([float(d["iou"]) for d in dense_scores]),
                  "iou_per_seed": [round(float(d["iou"]), 4) for d in dense_scores],
                  "tol_f1": mean_std([float(d["tol_f1"]) for d in dense_scores]),
                  "val_iou": mean_std([dense[s]["metrics"]["val/iou"] for s in seeds]),
                  "epochs": [dense[s]["epochs"] for s in seeds], "gmacs": dense[seeds[0]]["gmacs"],
                  # convergence: best val IoU of the last 5 epochs minus the best before them
                  "last5_gain": [_late_gain(dense[s].get("val_curve", []), 5) for s in seeds],
                  "mparams": dense[seeds[0]]["mparams"]},
        "reference": reference, "test_images": len(dense[seeds[0]]["test_counts"]["tp"]), "rows": rows,
    }


def _late_gain(curve: list[tuple[int, float]], last: int) -> float | None:
    values = [iou for _, iou in curve]
    return max(values[-last:]) - max(values[:-last]) if len(values) > last else None


def _pm(stat: dict[str, float], digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _diff(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "-"
    low, high = stat["ci95"]
    return f"{stat['mean']:+.3f} [{low:+.3f}, {high:+.3f}]"


def table(summary: dict[str, Any]) -> str:
    """The results as a Markdown table (printed and put in the closing note)."""
    ref = summary["reference"]
    d = summary["dense"]
    lines = [f"| method | MAC target | MACs cut | GMACs | Mparams | IoU after removal | final IoU | tol. F1 | "
             f"steps to within 1 pt (budget) | final - dense [95% CI] | final - {ref} [95% CI] |",
             "|---" * 11 + "|",
             f"| dense | - | - | {d['gmacs']:.3f} | {d['mparams']:.2f} | - | {_pm(d['iou'])} | {_pm(d['tol_f1'])} "
             f"| - | - | - |"]
    for r in summary["rows"]:
        steps = ", ".join("never" if s is None else str(s) for s in r["steps_to_recover"])
        budget = max(r["budget_steps"]) if r["budget_steps"] else 0
        lines.append(
            f"| {r['method']} | {r['macs_reduction']:.2f} | {r['achieved_reduction']['mean']:.1%} | "
            f"{r['gmacs']['mean']:.3f} | {r['mparams']['mean']:.2f} | {_pm(r['iou_after_removal'])} | "
            f"{_pm(r['iou_final'])} | {_pm(r['tol_f1_final'])} | {steps} ({budget}) | {_diff(r['vs_dense'])} | "
            f"{_diff(r.get(f'vs_{ref}'))} |")
    return "\n".join(lines)


def pareto_plot(summary: dict[str, Any], path: Path) -> None:
    """Final test IoU (mean ± std over seeds) against GMACs; hollow markers: right after removal."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    d = summary["dense"]
    ax.errorbar([d["gmacs"]], [d["iou"]["mean"]], yerr=[d["iou"]["std"]], fmt="k*", ms=12, capsize=3, label="dense")
    methods = list(dict.fromkeys(r["method"] for r in summary["rows"]))
    colours = dict(zip(methods, plt.cm.tab10.colors, strict=False))
    for r in summary["rows"]:
        # methods at one target have the same GMACs: spread them a little so none hides another
        spread = 1 + 0.03 * (methods.index(r["method"]) - (len(methods) - 1) / 2)
        x, c = r["gmacs"]["mean"] * spread, colours[r["method"]]
        ax.errorbar([x], [r["iou_final"]["mean"]], yerr=[r["iou_final"]["std"]], fmt="o", color=c, capsize=3,
                    label=r["method"] if r["macs_reduction"] == min(q["macs_reduction"] for q in summary["rows"]
                                                                    if q["method"] == r["method"]) else None)
        ax.plot([x], [r["iou_after_removal"]["mean"]], "o", mfc="none", color=c)
        ax.annotate(f"{r['method']} -{r['macs_reduction']:.0%}", (x, r["iou_final"]["mean"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("GMACs at the training crop (methods at one target spread apart for legibility)")
    ax.set_ylabel("test IoU (power line)")
    ax.set_title(f"PLDU: filled = after fine-tuning, hollow = right after removal ({len(d['seeds'])} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(summary: dict[str, Any], json_path: Path, png_path: Path, about: dict[str, Any]) -> None:
    """Write the results JSON and the Pareto PNG, and print the table."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({**about, **summary, "table": table(summary)}, indent=1))
    json_path.with_suffix(".md").write_text(table(summary) + "\n")
    pareto_plot(summary, png_path)
    print(table(summary))
    print(f"wrote {json_path} and {png_path}")
