"""Power-line metrics over a whole split: summed TP/FP/FN/TN, never averaged per image."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torchmetrics import Metric

from pipeline.data.sources.base import IGNORE_INDEX, LINE

N_BINS = 100  # thresholds k / N_BINS; 0.5 is one of them


def line_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) probability of the line class."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, LINE]


class LineMetrics(Metric):
    """Line-vs-rest confusion counts at every threshold k/100, from probability histograms.

    Ignore pixels (void labels and padding, both IGNORE_INDEX) are excluded. The counts are
    sum-reduced across DDP ranks, so a split's figures do not depend on how it was sharded.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("line_hist", torch.zeros(N_BINS, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("rest_hist", torch.zeros(N_BINS, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        """prob: (B, H, W) line probability; target: (B, H, W) class ids with IGNORE_INDEX."""
        valid = target != IGNORE_INDEX
        bins = (prob.detach() * N_BINS).long().clamp_(0, N_BINS - 1)
        is_line = target == LINE
        self.line_hist += torch.bincount(bins[valid & is_line], minlength=N_BINS)
        self.rest_hist += torch.bincount(bins[valid & ~is_line], minlength=N_BINS)

    def compute(self) -> torch.Tensor:
        """(4, N_BINS): tp, fp, fn, tn at the thresholds k/N_BINS (predicted line = prob >= k/N).

        torchmetrics caches compute()'s result, so thresholds are applied by `line_scores`.
        """
        tp = self.line_hist.flip(0).cumsum(0).flip(0)
        fp = self.rest_hist.flip(0).cumsum(0).flip(0)
        return torch.stack([tp, fp, self.line_hist.sum() - tp, self.rest_hist.sum() - fp])


def line_scores(counts: torch.Tensor, threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """iou, miou, f1, precision, recall at `threshold` from LineMetrics counts, and the
    threshold that maximises F1 (what is stored with a model as its tuned threshold)."""
    tp, fp, fn, tn = counts
    f1_all = smp.metrics.f1_score(tp, fp, fn, tn, reduction="none", zero_division=0.0)
    k = min(int(round(threshold * N_BINS)), N_BINS - 1)
    tp, fp, fn, tn = tp[k], fp[k], fn[k], tn[k]
    line_iou = smp.metrics.iou_score(tp, fp, fn, tn, reduction="none", zero_division=0.0)
    rest_iou = smp.metrics.iou_score(tn, fn, fp, tp, reduction="none", zero_division=0.0)
    return {
        "iou": line_iou,
        "miou": (line_iou + rest_iou) / 2,
        "f1": f1_all[k],
        "precision": smp.metrics.precision(tp, fp, fn, tn, reduction="none", zero_division=0.0),
        "recall": smp.metrics.recall(tp, fp, fn, tn, reduction="none", zero_division=0.0),
        "best_threshold": torch.argmax(f1_all).float() / N_BINS,
    }
