"""The selection score (val IoU at the F1-optimal threshold) and the failure rule."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.labels import LINE
from pipeline.metrics import LineMetrics, line_scores
from pipeline.report.collect import dvclive_curve, mark_failed
from pipeline.report.figures import leaders
from pipeline.report.render import model_table
from pipeline.report.timing import speed_notes
from pipeline.selection import SCORE, failed
from pipeline.study import pick
from pipeline.train import fit

SQUEEZE = 0.2  # a good model's probabilities times this: right order, wrong scale


def scores(prob: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    metric = LineMetrics()
    metric.update(prob, mask)
    return {k: float(v) for k, v in line_scores(metric.compute(), 0.5).items()}


def good_and_half(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A perfect model's probabilities squeezed towards 0, and a calibrated model that finds
    every other line pixel (checkerboard)."""
    line = mask == LINE
    squeezed = torch.where(line, 0.9, 0.1) * SQUEEZE
    i, j = torch.meshgrid(torch.arange(mask.shape[-2]), torch.arange(mask.shape[-1]), indexing="ij")
    half = torch.where(line & ((i + j) % 2 == 0), 0.9, 0.1).expand_as(mask)
    return squeezed, half


def test_a_squeezed_good_model_scores_above_a_calibrated_mediocre_one_and_is_picked():
    mask = torch.zeros(2, 16, 16, dtype=torch.long)
    mask[:, :, 3] = LINE
    mask[:, 5, :] = LINE
    squeezed, half = good_and_half(mask)
    good, mediocre = scores(squeezed, mask), scores(half, mask)
    assert good["iou"] == 0 and good["iou_tuned"] == pytest.approx(1.0)  # 0.5 sees nothing, 0.03..0.18 all
    assert 0.4 < mediocre["iou"] < 0.6 and mediocre["iou_tuned"] == pytest.approx(mediocre["iou"])
    rows = {"good": {**{f"val/{k}": v for k, v in good.items()}, "gmacs": 1.0},
            "mediocre": {**{f"val/{k}": v for k, v in mediocre.items()}, "gmacs": 1.0}}
    assert pick(rows, tolerance=0.0) == "good"


def test_iou_tuned_is_the_best_iou_over_thresholds():
    torch.manual_seed(0)
    mask = (torch.rand(2, 32, 32) < 0.1).long()
    prob = torch.rand(2, 32, 32) * 0.4 + 0.2 * mask  # overlapping; the best threshold is below 0.5
    out = scores(prob, mask)
    line = mask == LINE
    ious = [((prob >= t) & line).sum() / ((prob >= t) | line).sum() for t in torch.arange(1, 100) / 100]
    assert out["iou_tuned"] == pytest.approx(float(max(ious)), abs=1e-6)
    assert out["iou_tuned"] > out["iou"]


def test_a_dead_model_gets_threshold_half_and_score_zero():
    mask = torch.zeros(1, 16, 16, dtype=torch.long)
    mask[:, :, 3] = LINE
    out = scores(torch.zeros(1, 16, 16), mask)  # never above 0.01: F1 > 0 only at threshold 0
    assert out["best_threshold"] == 0.5 and out["iou_tuned"] == 0 and out["iou"] == 0


class Oracle(nn.Module):
    """Predicts from the true mask (handed over by ScriptEpochs) as the epoch's `mode` says:
    0 a perfect model squeezed towards 0, 1 a calibrated one that finds half the lines. The
    mode is a buffer, so the kept checkpoint tells which epoch it came from."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))  # something to train
        self.register_buffer("mode", torch.zeros((), dtype=torch.long))
        self.mask: torch.Tensor | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        zeros = image[:, :1] * 0 + self.weight * 0
        if self.mask is None or self.mask.shape[-2:] != image.shape[-2:]:
            return zeros - 10  # outside validation: nothing
        prob = good_and_half(self.mask)[int(self.mode)]
        return zeros + torch.logit(prob).unsqueeze(1)


class ScriptEpochs(Callback):
    def on_train_epoch_start(self, trainer, module) -> None:
        module.model.mode.fill_(trainer.current_epoch)

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        module.model.mask = batch["mask"]

    def on_fit_end(self, trainer, module) -> None:
        module.model.mask = None


def test_fit_keeps_the_squeezed_good_epoch(tiny_data, params, tmp_path, one_thread):
    model_cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate({**params["train"], "epochs": 2})
    trainer = TrainerCfg.model_validate(params["trainer"])
    result = fit(model_cfg, train, trainer, tiny_data, tmp_path / "logs", 0, model=Oracle(),
                 callbacks=[ScriptEpochs()])
    at_half = [v for _, v in dvclive_curve(tmp_path / "logs", "val/iou")]
    tuned = [v for _, v in dvclive_curve(tmp_path / "logs", SCORE)]
    assert at_half[0] == 0 < at_half[1] and tuned[0] > tuned[1]  # the scenario: 0.5 prefers epoch 1
    assert int(result.module.model.mode) == 0  # the kept checkpoint is epoch 0's
    assert result.epochs == 2


def test_failure_rule():
    assert failed(0.0, 0.6) and failed(0.29, 0.6)
    assert not failed(0.3, 0.6) and not failed(0.7, 0.6)


def test_a_dead_run_is_marked_and_never_a_leader():
    rows = {"dense": {"kind": "dense", SCORE: 0.6, "test/iou": 0.6, "gmacs": 4.0},
            "dead after removal": {"kind": "pruned", "run": "dead", SCORE: 0.0, "test/iou": 0.02, "gmacs": 1.0},
            "dead fine-tuned": {"kind": "final", "run": "dead", SCORE: 0.1, "test/iou": 0.02, "gmacs": 1.0},
            "ok after removal": {"kind": "pruned", "run": "ok", SCORE: 0.1, "test/iou": 0.1, "gmacs": 2.0},
            "ok fine-tuned": {"kind": "final", "run": "ok", SCORE: 0.55, "test/iou": 0.55, "gmacs": 2.0}}
    mark_failed(rows)
    assert [n for n, r in rows.items() if r.get("failed")] == ["dead after removal", "dead fine-tuned"]
    table = model_table(rows).splitlines()
    assert [line.endswith("| **failed** |") for line in table[2:]] == [False, True, True, False, False]
    speed = {run: {"eager_speedup": 2.0, "onnx_speedup": 2.0} for run in ("dead", "ok")}
    notes = speed_notes(rows, speed)
    assert ["failed" in note for note in notes] == [True, False]
    assert leaders(rows) == [(2.0, 0.55), (4.0, 0.6)]  # the dead run is cheapest, but no leader
