"""The one selection score and the one failure rule, used by training, studies, the report and
the benchmark alike."""

from __future__ import annotations

# The line IoU on val at the F1-optimal threshold (pipeline.metrics.line_scores' iou_tuned).
# Every reported figure uses the threshold tuned on val, so selections do too: IoU at a fixed
# 0.5 picks checkpoints of a miscalibrated (e.g. freshly pruned) model almost at random.
SCORE = "val/iou_tuned"

FAIL_SHARE = 0.5  # a run below this share of its dense model's val score has failed


def failed(score: float, dense_score: float) -> bool:
    """Whether a run with final val `score` (SCORE) failed against its seed's dense model.

    A run fails when it ends below FAIL_SHARE x the dense val score: it lost most of what the
    dense model could do, so its figures describe a broken model, not a trade-off between
    accuracy and cost. Such runs are marked and never called best or recommended; without one
    fixed rule each table would judge "broken" its own way.
    """
    return score < FAIL_SHARE * dense_score
