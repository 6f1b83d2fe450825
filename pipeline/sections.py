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


class QuantizeCfg(Strict):
    """`quantize`: the export stage's INT8 copy of the exported model (pipeline.int8).

    Static QDQ quantisation with ONNX Runtime's tools, per-channel weights, calibrated on
    training crops; shipped only if the line class's val IoU (at the model's tuned threshold)
    loses at most `max_iou_drop` against the FP32 ONNX model. Over it, the model is quantised
    again with the `keep_fp32` nodes left in FP32; still over, no INT8 model is written and
    the record (reports/int8.json) and the report say why."""

    enabled: bool = True
    calibration_crops: int = Field(16, ge=1, le=1000)  # training crops the activation ranges are taken on
    calibration_size: int = Field(128, ge=32, multiple_of=32)  # their side (px): the default train.crop_size
    # U8: unsigned activations with signed weights (U8S8), the format that gave ~2x on the dense
    # model on AVX512-VNNI in issue 15; S8 (S8S8) gave no speed-up there
    activations: Literal["U8", "S8"] = "U8"
    max_iou_drop: float = Field(0.01, ge=0, le=1)  # FP32 ONNX val IoU - INT8 val IoU, at most
    # the fallback's FP32 nodes: auto = the first convolution and the head (pipeline.quantize.
    # first_and_last_convs); a list names ONNX nodes; [] = no fallback
    keep_fp32: Literal["auto"] | list[str] = "auto"
