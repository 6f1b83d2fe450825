"""Config sections added after pipeline/config.py was frozen (a committed benchmark's records
hash the code it runs, config.py included): each is registered in pipeline.params.SECTIONS
like the others, and validated the same way (unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config import Strict


class PickCfg(Strict):
    """The rule that chooses the model to ship (stage `pick`): the cheapest by `objective`
    among the dense model and the fine-tuned runs whose val score (pipeline.selection.SCORE) is
    at most `max_iou_drop` below the dense model's; failed runs never qualify. Latency is no
    objective: it is measured only by the report, after the choice, and it is noisy."""

    max_iou_drop: float = Field(0.01, ge=0, le=1)  # dense val score - a model's val score, at most
    objective: Literal["gmacs", "mparams"] = "gmacs"  # what "cheapest" means
    model: str | None = None  # force this run (<method>-<target>) or "dense": the rule is then only reported
