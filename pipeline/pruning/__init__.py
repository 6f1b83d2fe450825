"""Channel pruning: feature templates per dependency group (templates.py) and the HQS-L0
regulariser that decides which channels to remove under a MAC target (hqs_l0.py)."""

from pipeline.pruning.hqs_l0 import HqsL0, hard_threshold, lambda_for_target
from pipeline.pruning.templates import Templates, attach_templates, fold_and_remove, round_keep

__all__ = ["HqsL0", "Templates", "attach_templates", "fold_and_remove", "hard_threshold", "lambda_for_target",
           "round_keep"]
