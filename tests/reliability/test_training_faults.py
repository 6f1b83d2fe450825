"""Training faults: a diverging loss stops with a clear message; running out of memory gives advice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.cli import run
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.errors import PipelineError
from pipeline.models import create_model
from pipeline.resume import ResumeStore
from pipeline.train import fit


class Diverges(nn.Module):
    """The tiny model, whose output turns NaN from the second training step on."""

    def __init__(self, model: nn.Module, good_steps: int = 1) -> None:
        super().__init__()
        self.model, self.calls, self.good_steps = model, 0, good_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = self.model(x)
        return out * float("nan") if self.training and self.calls > self.good_steps else out


def test_a_nan_loss_stops_training_with_a_clear_message(tiny_data, params, tmp_path):
    model_cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate({**params["train"], "epochs": 2})
    trainer = TrainerCfg.model_validate(params["trainer"])
    with pytest.raises(PipelineError, match=r"training loss became nan at epoch 0, batch 1: lower train\.lr"):
        fit(model_cfg, train, trainer, tiny_data, tmp_path / "logs", 0, model=Diverges(create_model(model_cfg)))


def test_a_nan_loss_keeps_the_last_good_checkpoint(tiny_data, params, tmp_path):
    model_cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate({**params["train"], "epochs": 3})  # 2 steps per epoch: NaN in the second
    trainer = TrainerCfg.model_validate(params["trainer"])
    store = ResumeStore(tmp_path / "resume", "t", {})
    with pytest.raises(PipelineError, match=r"loss became nan at epoch 1, batch 0: .*the last good checkpoint "
                                            r"\(end of epoch 0\) is kept in .*resume") as err:
        fit(model_cfg, train, trainer, tiny_data, tmp_path / "logs", 0, resume=store,
            model=Diverges(create_model(model_cfg), good_steps=2))
    assert "\n" not in str(err.value)
    kept = torch.load(next((tmp_path / "resume").glob("*/checkpoints/last.ckpt")), weights_only=True)
    floats = [v for v in kept["state_dict"].values() if v.is_floating_point()]
    assert kept["epoch"] == 0 and floats and all(torch.isfinite(v).all() for v in floats)


def test_the_same_fit_without_nan_finishes(tiny_data, params, tmp_path):
    model_cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate({**params["train"], "epochs": 1})
    result = fit(model_cfg, train, TrainerCfg.model_validate(params["trainer"]), tiny_data, tmp_path / "logs", 0)
    assert result is not None and 0 <= result.metrics["test/iou"] <= 1


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 99999999999 bytes"),
                                   MemoryError()])
def test_out_of_memory_becomes_advice(error, capsys):
    def body():
        raise error

    with pytest.raises(SystemExit) as done:
        run(body)
    lines = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 1 and len(lines) == 1
    assert lines[0].startswith("error: out of memory") and "train.batch_size" in lines[0]


def test_other_runtime_errors_are_not_disguised():
    def body():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run(body)
