"""The benchmark's figure: final test IoU against GMACs, per arm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto_plot(summary: dict[str, Any], path: Path) -> None:
    """Final test IoU (mean ± std over seeds) against GMACs; hollow: right after removal; x: failed."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    methods = list(dict.fromkeys(r["arm"] for r in summary["rows"]))
    colours = dict(zip(methods, plt.cm.tab10.colors, strict=False))
    for r in summary["rows"]:
        # methods at one target have the same GMACs: spread them a little so none hides another
        spread = 1 + 0.03 * (methods.index(r["arm"]) - (len(methods) - 1) / 2)
        x, c = r["gmacs"]["mean"] * spread, colours[r["arm"]]
        ax.errorbar([x], [r["iou"]["mean"]], yerr=[r["iou"]["std"]], fmt="x" if r["failed"] else "o", color=c,
                    capsize=3, label=r["arm"] if r["macs_reduction"] in (None, max(
                        q["macs_reduction"] or 0 for q in summary["rows"] if q["arm"] == r["arm"])) else None)
        if "iou_after_removal" in r:
            ax.plot([x], [r["iou_after_removal"]["mean"]], "o", mfc="none", color=c)
    ax.set_xlabel("GMACs at the training crop (arms at one target spread apart for legibility)")
    ax.set_ylabel("test IoU (power line)")
    ax.set_title("PLDU: filled = after fine-tuning, hollow = right after removal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
