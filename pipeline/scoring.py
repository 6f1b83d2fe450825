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
from scipy.ndimage import distance_transform_edt
from torch import nn

from pipeline.data.datamodule import PreparedSplit, eval_transform, pad_collate
from pipeline.data.sources.base import IGNORE_INDEX, LINE
from pipeline.metrics import line_probability

# BSDS' maxDist as a share of the image diagonal; our matching is not one-to-one and does not
# thin predictions, so the figure is not directly comparable with BSDS ODS
TOLERANCE = 0.0075
COUNTS = ("tp", "fp", "fn", "tol_pred_hit", "tol_pred", "tol_true_hit", "tol_true")


@torch.inference_mode()
def split_probabilities(model: nn.Module, root: Path, split: str = "test") -> Iterator[tuple[str, np.ndarray,
                                                                                            np.ndarray]]:
    """(name, line probability HxW, mask HxW) for every image of a prepared split, whole size."""
    model.eval()
    for item in PreparedSplit(Path(root), split, eval_transform()):
        _, height, width = item["image"].shape
        logits = model(pad_collate([item])["image"])
        yield item["name"], line_probability(logits)[0, :height, :width].numpy(), item["mask"].numpy()


def image_counts(prob: np.ndarray, mask: np.ndarray, threshold: float, tolerance: float = TOLERANCE
                 ) -> dict[str, int]:
    """Strict and tolerant line counts of one image; ignore pixels count for neither side.

    Tolerant: a predicted line pixel is a hit when a true one lies within `tolerance` x the
    image diagonal, and a true pixel is a hit when a predicted one does.
    """
    valid = mask != IGNORE_INDEX
    pred = (prob >= threshold) & valid
    true = (mask == LINE) & valid
    max_dist = tolerance * float(np.hypot(*mask.shape))
    to_true = distance_transform_edt(~true) if true.any() else np.full(mask.shape, np.inf)
    to_pred = distance_transform_edt(~pred) if pred.any() else np.full(mask.shape, np.inf)
    return {
        "tp": int((pred & true).sum()), "fp": int((pred & ~true).sum()), "fn": int((~pred & true).sum()),
        "tol_pred_hit": int((pred & (to_true <= max_dist)).sum()), "tol_pred": int(pred.sum()),
        "tol_true_hit": int((true & (to_pred <= max_dist)).sum()), "tol_true": int(true.sum()),
    }


def split_counts(model: nn.Module, root: Path, threshold: float, split: str = "test") -> dict[str, list[int]]:
    """Per-image counts over a split: {"names": [...], "tp": [...], ...} (JSON-ready)."""
    table: dict[str, list] = {"names": [], **{key: [] for key in COUNTS}}
    for name, prob, mask in split_probabilities(model, root, split):
        table["names"].append(name)
        for key, value in image_counts(prob, mask, threshold).items():
            table[key].append(value)
    return table


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def scores(counts: dict[str, np.ndarray | list[int]], axis: int = -1) -> dict[str, np.ndarray]:
    """iou, f1 and tolerance precision/recall/F1 from counts summed along `axis` (images).

    Works on resampled count arrays too (shape (..., n_images)), which the bootstrap needs.
    """
    c = {key: np.asarray(counts[key]).sum(axis=axis) for key in COUNTS}
    precision, recall = _ratio(c["tol_pred_hit"], c["tol_pred"]), _ratio(c["tol_true_hit"], c["tol_true"])
    return {
        "iou": _ratio(c["tp"], c["tp"] + c["fp"] + c["fn"]),
        "f1": _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
        "tol_precision": precision, "tol_recall": recall,
        "tol_f1": _ratio(2 * precision * recall, precision + recall),
    }
