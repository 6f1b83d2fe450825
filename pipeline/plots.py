"""Figures people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402


def iou_vs_gmacs(rows: dict[str, dict[str, float]], winner: str, path: Path, title: str) -> None:
    """Scatter of val IoU against GMACs, every point labelled, the winner highlighted."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, row in rows.items():
        chosen = name == winner
        ax.scatter(row["gmacs"], row["val/iou"], s=60 if chosen else 30,
                   c="tab:red" if chosen else "tab:blue", zorder=3)
        ax.annotate(name + (" (chosen)" if chosen else ""), (row["gmacs"], row["val/iou"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("val power-line IoU (threshold 0.5)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def study_bars(rows: dict[str, dict[str, float]], winner: str, path: Path, title: str) -> None:
    """Val IoU per option of a study, the chosen one highlighted."""
    names = list(rows)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 4))
    values = [rows[name]["val/iou"] for name in names]
    bars = ax.bar(names, values, color=["tab:red" if n == winner else "tab:blue" for n in names])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_ylabel("val power-line IoU (threshold 0.5)")
    ax.set_title(f"{title} (chosen: {winner})")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
