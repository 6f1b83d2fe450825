"""Config sections added after pipeline/config.py was frozen (a committed benchmark's records
hash the code it runs, config.py included): each is registered in pipeline.params.SECTIONS
like the others, and validated the same way (unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config import Strict, SyntheticCfg


class PickCfg(Strict):
    """The rule that chooses the model to ship (stage `pick`): the cheapest by `objective`
    among the dense model and the fine-tuned runs whose val score (pipeline.selection.SCORE) is
    at most `max_iou_drop` below the dense model's; failed runs never qualify. Latency is no
    objective: it is measured only by the report, after the choice, and it is noisy."""

    max_iou_drop: float = Field(0.01, ge=0, le=1)  # dense val score - a model's val score, at most
    objective: Literal["gmacs", "mparams"] = "gmacs"  # what "cheapest" means
    model: str | None = None  # force this run (<method>-<target>) or "dense": the rule is then only reported


class PretrainCfg(Strict):
    """`pretrain`: the baseline stage's optional synthetic pretraining (pipeline.pretrain).

    Kept small: the generator's own settings are prepare's SyntheticCfg."""

    enabled: bool = False  # off: the baseline trains from scratch on the prepared data, as before
    # the synthetic generator's settings; n_train stays <= 1000 (SyntheticCfg) so it fits a CPU
    synthetic: SyntheticCfg = SyntheticCfg(renderer="wires", n_train=300, n_val=40, n_test=8)
    epochs: int = Field(5, ge=1)
    lr: float | None = Field(None, gt=0)  # null: train.lr
