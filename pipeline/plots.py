"""Figures people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.selection import SCORE  # noqa: E402


def iou_vs_gmacs(rows: dict[str, dict[str, float]], winner: str, path: Path, title: str, y: str = SCORE) -> None:
    """Scatter of IoU (`y`, by default the selection score) against GMACs, every point labelled,
    the winner highlighted."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, row in rows.items():
        chosen = name == winner
        ax.scatter(row["gmacs"], row[y], s=60 if chosen else 30, c="tab:red" if chosen else "tab:blue", zorder=3)
        ax.annotate(name + (" (chosen)" if chosen else ""), (row["gmacs"], row[y]),
                    textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel(f"{y.split('/')[0]} power-line IoU" + (" (threshold tuned on val)" if y == SCORE else ""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def study_bars(rows: dict[str, dict[str, float]], winner: str, path: Path, title: str) -> None:
    """The selection score per option of a study, the chosen one highlighted."""
    names = list(rows)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 4))
    values = [rows[name][SCORE] for name in names]
    bars = ax.bar(names, values, color=["tab:red" if n == winner else "tab:blue" for n in names])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_ylabel("val power-line IoU (threshold tuned on val)")
    ax.set_title(f"{title} (chosen: {winner})")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def template_histograms(runs: dict[str, dict], path: Path) -> None:
    """Per template method, the histogram of final effective template magnitudes (log scale,
    before any threshold), kept and removed channels stacked; the title holds the saliency gap of
    the score the method decided on (for HQS-L0 the z-step's, not these magnitudes)."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(7, 2.2 * len(runs) + 0.6), sharex=True, squeeze=False)
    for ax, (name, t) in zip(axes[:, 0], runs.items(), strict=True):
        magnitudes = np.clip(np.asarray(t["effective"]), 1e-6, None)
        kept = np.asarray(t["kept"], dtype=bool)
        bins = np.logspace(-6, 1, 57)
        ax.hist([magnitudes[kept], magnitudes[~kept]], bins=bins, stacked=True, color=["tab:blue", "tab:red"],
                label=["kept", "removed"])
        ax.set_xscale("log")
        ax.set_ylabel("channels")
        ax.set_title(f"{name}: saliency gap {t['saliency_gap']:.3g} (smallest kept / largest removed decision score)",
                     fontsize=9)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("effective template magnitude |s|·(neighbour scale), clipped at 1e-6")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
