"""Power-line metrics over a whole split: summed TP/FP/FN/TN, never averaged per image."""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import torch
from scipy.ndimage import distance_transform_edt
from torchmetrics import Metric

from pipeline.labels import IGNORE_INDEX, LINE

N_BINS = 100  # thresholds k / N_BINS; 0.5 is one of them
# BSDS' maxDist as a share of the image diagonal. Our matching is not one-to-one and does not
# thin predictions, so tolerance F1 is not directly comparable with BSDS ODS.
TOLERANCE = 0.0075
TOLERANCE_COUNTS = ("tol_pred_hit", "tol_pred", "tol_true_hit", "tol_true")


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
    """iou, miou, f1, precision, recall at `threshold` from LineMetrics counts; the threshold
    that maximises F1 (what is stored with a model as its tuned threshold) and `iou_tuned`,
    the line IoU there: the threshold-free selection score (pipeline.selection).

    Threshold 0 is never chosen: it calls every pixel line, which has a small F1 > 0 wherever
    lines exist. So a dead model (F1 = 0 at every threshold from 0.01 up) gets threshold 0.5
    and iou_tuned 0, never "every pixel is line".
    """
    tp, fp, fn, tn = counts
    f1_all = smp.metrics.f1_score(tp, fp, fn, tn, reduction="none", zero_division=0.0)
    tuned = f1_all[1:]  # on the device: no wait for the host
    best = torch.where(tuned.max() > 0, 1 + torch.argmax(tuned), N_BINS // 2)
    iou_all = smp.metrics.iou_score(tp, fp, fn, tn, reduction="none", zero_division=0.0)
    k = min(int(round(threshold * N_BINS)), N_BINS - 1)
    tp, fp, fn, tn = tp[k], fp[k], fn[k], tn[k]
    rest_iou = smp.metrics.iou_score(tn, fn, fp, tp, reduction="none", zero_division=0.0)
    return {
        "iou": iou_all[k],
        "miou": (iou_all[k] + rest_iou) / 2,
        "f1": f1_all[k],
        "precision": smp.metrics.precision(tp, fp, fn, tn, reduction="none", zero_division=0.0),
        "recall": smp.metrics.recall(tp, fp, fn, tn, reduction="none", zero_division=0.0),
        "best_threshold": best.float() / N_BINS,
        "iou_tuned": iou_all[best],
    }


def tolerance_counts(pred: np.ndarray, true: np.ndarray, valid: np.ndarray, tolerance: float = TOLERANCE
                     ) -> dict[str, int]:
    """Distance-tolerant hits of one image (HxW bool arrays; padding and void are not `valid`).

    A predicted line pixel is a hit when a true one lies within `tolerance` x the diagonal of
    the labelled area, and a true pixel is a hit when a predicted one does.
    """
    pred, true = pred & valid, true & valid
    max_dist = tolerance * float(np.hypot(valid.any(1).sum(), valid.any(0).sum()))
    to_true = distance_transform_edt(~true) if true.any() else np.full(true.shape, np.inf)
    to_pred = distance_transform_edt(~pred) if pred.any() else np.full(pred.shape, np.inf)
    return {"tol_pred_hit": int((pred & (to_true <= max_dist)).sum()), "tol_pred": int(pred.sum()),
            "tol_true_hit": int((true & (to_pred <= max_dist)).sum()), "tol_true": int(true.sum())}


def ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den elementwise, 0 where den is 0 (smp's zero_division=0 convention)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def tolerance_f1(c: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) from summed tolerance counts (numbers or arrays)."""
    precision, recall = ratio(c["tol_pred_hit"], c["tol_pred"]), ratio(c["tol_true_hit"], c["tol_true"])
    return precision, recall, ratio(2 * precision * recall, precision + recall)


class ToleranceMetrics(Metric):
    """Tolerance precision/recall/F1 of the line class at one threshold, summed over images."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in TOLERANCE_COUNTS:
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, target: torch.Tensor, threshold: float) -> None:
        """prob: (B, H, W) line probability; target: (B, H, W) class ids with IGNORE_INDEX."""
        pred = (prob.detach() >= threshold).cpu().numpy()
        target = target.cpu().numpy()
        for p, t in zip(pred, target, strict=True):
            for name, value in tolerance_counts(p, t == LINE, t != IGNORE_INDEX).items():
                setattr(self, name, getattr(self, name) + value)

    def compute(self) -> dict[str, torch.Tensor]:
        counts = {name: int(getattr(self, name)) for name in TOLERANCE_COUNTS}
        precision, recall, f1 = tolerance_f1(counts)
        return {"tol_precision": torch.tensor(float(precision)), "tol_recall": torch.tensor(float(recall)),
                "tol_f1": torch.tensor(float(f1))}
