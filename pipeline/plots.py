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
