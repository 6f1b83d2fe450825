"""The benchmark's figure: final test IoU per method, one panel per MAC target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto_plot(summary: dict[str, Any], path: Path) -> None:
    """Final test IoU (mean ± std over seeds) against GMACs, one panel per MAC target (many
    methods share a target's GMACs); dense and the control as reference lines in each;
    hollow: right after removal; x: failed."""
    rows = summary["rows"]
    targets = sorted({r["macs_reduction"] for r in rows if r["macs_reduction"] is not None})
    references = [r for r in rows if r["macs_reduction"] is None]
    methods = list(dict.fromkeys(r["arm"] for r in rows if r["macs_reduction"] is not None))
    colours = dict(zip(methods, plt.cm.tab20.colors, strict=False))  # one colour per method in every panel
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(5.5 * max(len(targets), 1), 4.8), sharey=True,
                             squeeze=False)
    for ax, target in zip(axes[0], targets, strict=False):
        for ref, style in zip(references, ("-", "--", ":"), strict=False):
            ax.axhline(ref["iou"]["mean"], color="grey", linestyle=style, linewidth=1, label=ref["arm"])
        # every method at a target has about the same GMACs: one column each, its GMACs under its name
        shown = [r for r in rows if r["macs_reduction"] == target]
        for x, r in enumerate(shown):
            c = colours[r["arm"]]
            ax.errorbar([x], [r["iou"]["mean"]], yerr=[r["iou"]["std"]], fmt="x" if r["failed"] else "o", color=c,
                        capsize=3)
            if "iou_after_removal" in r:
                ax.plot([x], [r["iou_after_removal"]["mean"]], "o", mfc="none", color=c)
        ax.set_xticks(range(len(shown)), [f"{r['arm']}\n{r['gmacs']['mean']:.3f}" for r in shown], fontsize=7,
                      rotation=45, ha="right")
        ax.set_title(f"-{target:.0%} MACs")
        ax.set_xlabel("method, GMACs at the training crop")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel("test IoU (power line)")
    fig.suptitle("PLDU: filled = after fine-tuning (mean ± std over seeds), hollow = right after removal, "
                 "x = failed")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
