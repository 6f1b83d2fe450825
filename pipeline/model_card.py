"""The shipped model's card (the pick stage writes it into checkpoints/ship/model.json; export
copies it into the ONNX metadata; the report shows it): on top of what every model's card
holds (architecture, normalisation, threshold, metrics, training data), the commit and date,
the input size, 95 % intervals of its test figures, its intended use and known limits.

The test figures are reported, never used to choose (the pick rule reads val only).
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from torch import nn

from pipeline.card import ModelCard
from pipeline.intervals import bca
from pipeline.scoring import scores, split_counts

RESAMPLES = 2000
REPORTED = ("iou", "tol_f1")  # test figures given with an interval


# what decides a model; the stage records, reports and dvc.lock change during every `dvc repro`
DECIDING = ("pipeline", "params.yaml", "dvc.yaml", "configs", "pyproject.toml")


def git_commit(folder: Path = Path(".")) -> str | None:
    """The commit checked out in `folder` (with "-dirty" when the code or params differ from
    it), or None outside a git repository."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *DECIDING],
                               cwd=folder, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def intervals_on_test(model: nn.Module, card: ModelCard, data: Path) -> dict[str, list[float]]:
    """{"test/<figure>": [low, high]}: BCa intervals over the test images at the card's threshold."""
    counts = split_counts(model, data, card.threshold, "test")
    counts.pop("names")
    if not counts["tp"]:
        return {}
    return {f"test/{name}": bca(counts, lambda c, n=name: scores(c)[n], RESAMPLES)["ci95"] for name in REPORTED}


def intended_use(card: ModelCard, size: tuple[int, int]) -> str:
    """One sentence: what the model is for."""
    data = card.training_data
    seen = f"its training images (`{data.source}`)" if data else "its training images"
    return (f"Marking power-line pixels in RGB aerial (UAV) images like {seen}, at about {size[0]}x{size[1]} "
            f"pixels, as an aid to inspection: a person or a later check confirms what it finds.")


def known_limits(card: ModelCard) -> list[str]:
    """What the model's card must warn about, from what it holds."""
    limits = []
    data = card.training_data
    if data is None:
        limits.append("The training data is not recorded: treat every figure as unverified on your images.")
    elif data.synthetic:
        limits.append("Trained on synthetic wires only: it has never seen a real labelled wire and misses most "
                      "real ones; train it on real labelled images (prepare.source) before use.")
    test = (data.images.get("test") if data else None) or "few"
    limits.append(f"Its test figures come from {test} test images of the same source; see the intervals, and "
                  f"measure on your own images.")
    limits.append(f"The threshold {card.threshold:.2f} was tuned on the validation split; re-tune it on your own "
                  f"data if the images differ.")
    limits.append("Wires thinner than about a pixel at the input size are often missed or broken into pieces.")
    if card.method:
        limits.append(f"Pruned by {card.method} (-{card.macs_reduction:.0%} MACs target) and fine-tuned: compare "
                      f"with the dense model in the report before shipping.")
    return limits


def ship_card(model: nn.Module, card: ModelCard, data: Path, size: tuple[int, int]) -> ModelCard:
    """`card` completed as the shipped model's card."""
    return card.updated(commit=git_commit(), created=datetime.now(UTC).isoformat(timespec="seconds"),
                        input_size=list(size), intervals=intervals_on_test(model, card, data),
                        intended_use=intended_use(card, size), limits=known_limits(card))
