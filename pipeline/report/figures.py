"""The report's figures: Pareto front (MACs and measured latency), channels per layer, training curves
(predictions: predictions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.selection import SCORE  # noqa: E402

KIND_COLOURS = {"candidate": "tab:gray", "study": "tab:blue", "dense": "black", "pruned": "tab:orange",
                "final": "tab:red"}
CURVES = (SCORE, "train/loss_epoch")  # per-epoch metrics drawn for every training stage


def _save(fig: plt.Figure, path: Path, dpi: int = 110) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both fewer MACs and higher IoU, by MACs."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def leaders(rows: dict[str, dict[str, Any]]) -> list[tuple[float, float]]:
    """The Pareto front (GMACs, test IoU) of the models that did not fail: a failed run is
    never a leader, however cheap."""
    return pareto_front([(r["gmacs"], r["test/iou"]) for r in rows.values() if not r.get("failed")])


def pareto(rows: dict[str, dict[str, Any]], path: Path) -> None:
    """Test IoU against GMACs for every model, each point labelled, the front drawn through
    the models that did not fail (a failed run is never a leader)."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    labels: dict[tuple[float, float], list[str]] = {}  # models at the same point share one label
    for name, row in rows.items():
        ax.scatter(row["gmacs"], row["test/iou"], c=KIND_COLOURS[row["kind"]], s=40, zorder=3)
        labels.setdefault((round(row["gmacs"], 2), round(row["test/iou"], 3)), []).append(
            name + (" (failed)" if row.get("failed") else ""))
    for (x, y), names in labels.items():
        ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = leaders(rows)
    xs, ys = zip(*front, strict=True)
    ax.step([*xs, max(r["gmacs"] for r in rows.values())], [*ys, ys[-1]], where="post", color="tab:green",
            lw=2, alpha=0.5, label="Pareto front", zorder=2)
    for kind, colour in KIND_COLOURS.items():
        ax.scatter([], [], c=colour, label=kind)
    _finish_iou_chart(fig, ax, "GMACs per image (cost size)", "accuracy vs cost of every model", path)


def iou_vs_latency(rows: dict[str, dict[str, Any]], int8: dict[str, tuple[float, float]], path: Path) -> None:
    """Test IoU against measured ONNX Runtime latency: every timed model in FP32 (circles, the
    MAC chart's colours) and the INT8 models (`int8`: {label: (ms, test IoU)}, stars), so what
    INT8 buys in milliseconds and costs in IoU shows beside what pruning does."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    timed = {name: row for name, row in rows.items() if isinstance(row.get("onnx_ms"), float | int)}
    for name, row in timed.items():
        ax.scatter(row["onnx_ms"], row["test/iou"], c=KIND_COLOURS[row["kind"]], s=40, zorder=3)
        ax.annotate(name + (" (failed)" if row.get("failed") else ""), (row["onnx_ms"], row["test/iou"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    for label, (ms, iou) in int8.items():
        ax.scatter(ms, iou, marker="*", c="tab:purple", s=160, zorder=4)
        ax.annotate(label, (ms, iou), textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:purple")
    for kind, colour in KIND_COLOURS.items():
        if any(row["kind"] == kind for row in timed.values()):
            ax.scatter([], [], c=colour, label=f"{kind} (FP32)")
    if int8:
        ax.scatter([], [], marker="*", c="tab:purple", s=160, label="INT8 (IoU by ONNX Runtime)")
    _finish_iou_chart(fig, ax, "ONNX Runtime latency, ms (batch 1, measured)",
                      "accuracy vs measured latency, FP32 and INT8", path)


def _finish_iou_chart(fig: Any, ax: Any, xlabel: str, title: str, path: Path) -> None:
    """Labels, grid, legend and file of a test-IoU-against-cost chart (the MAC and latency charts)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test power-line IoU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def channels_per_layer(prunes: dict[str, dict[str, Any]], path: Path) -> None:
    """Output channels of every conv layer, dense (bars) and kept by each pruning run (lines)."""
    fig, ax = plt.subplots(figsize=(10, 4))
    first = next(iter(prunes.values()))["channels"]
    x = np.arange(len(first))
    ax.bar(x, [dense for dense, _ in first.values()], color="lightgray", label="dense")
    for run, record in prunes.items():
        ax.step(x, [kept for _, kept in record["channels"].values()], where="mid", label=run)
    ax.set_yscale("log")
    ax.set_xlabel("conv layer (network order: encoder, then decoder)")
    ax.set_ylabel("output channels")
    ax.set_title("channels kept per layer")
    ax.legend(fontsize=8)
    _save(fig, path)


def training_curves(curves: dict[str, dict[str, dict[str, list[float]]]], path: Path) -> None:
    """The selection score and train loss (CURVES) per epoch, one column per stage, one line per run."""
    stages = [s for s in curves if any(curves[s].values())]
    fig, axes = plt.subplots(2, len(stages), figsize=(3.2 * len(stages), 5.5), squeeze=False)
    for col, stage in enumerate(stages):
        for row, metric in enumerate(CURVES):
            ax = axes[row, col]
            for run, values in curves[stage].get(metric, {}).items():
                ax.plot(range(1, len(values) + 1), values, marker=".", label=run)
            ax.set_title(f"{stage}: {metric}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0, col].legend(fontsize=6)
    _save(fig, path)
