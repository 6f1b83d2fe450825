"""Per-image scores on a prepared split: confusion counts at a threshold and the
distance-tolerant counts behind tolerance F1.

Summed over images they give a split's figures (the same strict IoU as the training
metrics); kept per image they let the benchmark bootstrap over test images and the
report draw prediction panels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.data.datamodule import PreparedSplit, eval_transform, pad_collate
from pipeline.labels import IGNORE_INDEX, LINE
from pipeline.metrics import TOLERANCE_COUNTS, line_probability, ratio, tolerance_counts, tolerance_f1

COUNTS = ("tp", "fp", "fn", *TOLERANCE_COUNTS)


def split_images(root: Path, split: str = "test", limit: int | None = None
                 ) -> Iterator[tuple[str, torch.Tensor, np.ndarray]]:
    """(name, padded normalised batch 1x3xH'xW', mask HxW) for the first `limit` (all) images
    of a split, as evaluation sees them; crop outputs back to the mask's size."""
    images = PreparedSplit(Path(root), split, eval_transform())
    for index in range(len(images) if limit is None else min(limit, len(images))):
        item = images[index]
        yield item["name"], pad_collate([item])["image"], item["mask"].numpy()


@torch.inference_mode()
def split_probabilities(model: nn.Module, root: Path, split: str = "test", limit: int | None = None
                        ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, line probability HxW, mask HxW) for the first `limit` (all) images of a split, whole size."""
    model.eval()
    for name, batch, mask in split_images(root, split, limit):
        height, width = mask.shape
        yield name, line_probability(model(batch))[0, :height, :width].numpy(), mask


def image_counts(prob: np.ndarray, mask: np.ndarray, threshold: float) -> dict[str, int]:
    """Strict and tolerant line counts of one image; ignore pixels count for neither side."""
    valid = mask != IGNORE_INDEX
    pred, true = (prob >= threshold) & valid, (mask == LINE) & valid
    return {"tp": int((pred & true).sum()), "fp": int((pred & ~true).sum()), "fn": int((~pred & true).sum()),
            **tolerance_counts(pred, true, valid)}


def split_counts(model: nn.Module, root: Path, threshold: float, split: str = "test") -> dict[str, list[int]]:
    """Per-image counts over a split: {"names": [...], "tp": [...], ...} (JSON-ready)."""
    table: dict[str, list] = {"names": [], **{key: [] for key in COUNTS}}
    for name, prob, mask in split_probabilities(model, root, split):
        table["names"].append(name)
        for key, value in image_counts(prob, mask, threshold).items():
            table[key].append(value)
    return table


def scores(counts: dict[str, np.ndarray | list[int]], axis: int = -1) -> dict[str, np.ndarray]:
    """iou, f1 and tolerance precision/recall/F1 from counts summed along `axis` (images).

    Works on resampled count arrays too (shape (..., n_images)), which the bootstrap needs.
    """
    c = {key: np.asarray(counts[key]).sum(axis=axis) for key in COUNTS}
    precision, recall, f1 = tolerance_f1(c)
    return {
        "iou": ratio(c["tp"], c["tp"] + c["fp"] + c["fn"]),
        "f1": ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
        "tol_precision": precision, "tol_recall": recall, "tol_f1": f1,
    }
