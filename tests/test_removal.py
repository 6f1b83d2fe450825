"""Honest removal: pruned equals masked after a real AdamW sparsification run, unreachable
MAC targets stop with the limit named, one-shot removal recalibrates BatchNorm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline.artifact import save_model
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.data.datamodule import SegmentationData
from pipeline.errors import PipelineError
from pipeline.models import create_model
from pipeline.pruning.removal import check_achieved, check_reachable, fold_and_remove, recalibrate_bn, zero_dropped
from pipeline.pruning.sparsifiers import HqsSparsifier
from pipeline.pruning.templates import attach_templates
from pipeline.stages import prune
from pipeline.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unet(params: dict) -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelCfg.model_validate(params["model"]))


def test_after_adamw_sparsification_the_pruned_model_equals_the_masked_one_once_dropped_templates_are_zero(
        tiny_data, params, tmp_path):
    model = tiny_unet(params)
    templates = attach_templates(model, torch.zeros(1, 3, 64, 64))
    train = TrainCfg.model_validate({**params["train"], "epochs": 10, "optimizer": "adamw", "lr": 1e-3,
                                     "scheduler": "none", "early_stopping_patience": 0})
    sparsifier = HqsSparsifier(templates, reduction=0.5, lr=train.lr, final_stiffness=10.0)
    fit(ModelCfg.model_validate(params["model"]), train, TrainerCfg.model_validate(params["trainer"]), tiny_data,
        tmp_path / "logs", 0, model=model, callbacks=[sparsifier], keep_last=True, templates=templates)
    keep = sparsifier.keep()
    assert 0 < int((~keep).sum()) < len(keep)
    images = next(iter(SegmentationData(tiny_data, train).val_dataloader()))["image"]
    model.eval()
    with torch.no_grad():
        near_zero = model(images)
        assert (templates.flat()[~keep] != 0).all()  # AdamW's steps leave them near 0, not at 0
        zero_dropped(templates, keep)
        assert (templates.flat()[~keep] == 0).all() and (templates.flat()[keep] != 0).all()
        masked = model(images)
        pruned = fold_and_remove(model, templates, templates.split(keep)).eval()(images)
    assert (pruned - masked).abs().max() <= 1e-4
    assert (pruned - near_zero).abs().max() > 1e-4  # without the zeroing, removal changes the output


@pytest.mark.parametrize(("rules", "named"), [({"max_removed": 0.1}, "prune.max_layer_pruning (0.1)"),
                                              ({"round_to": 256}, "prune.round_to (256)")])
def test_an_unreachable_target_names_the_rule_that_blocks_it(params, rules, named):
    templates = attach_templates(tiny_unet(params), torch.zeros(1, 3, 64, 64))
    check_reachable(templates, 0.5)  # the model itself allows it
    for name, value in rules.items():
        setattr(templates, name, value)
    with pytest.raises(PipelineError, match=r"^prune: a 50% MAC cut is out of reach: at most \d") as err:
        check_reachable(templates, 0.5)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_a_target_beyond_the_prunable_layers_names_them_whatever_the_rules(params):
    model = create_model(ModelCfg.model_validate({**params["model"], "encoder": "mit_b0"}))
    templates = attach_templates(model.eval(), torch.zeros(1, 3, 64, 64))  # a transformer encoder
    templates.max_removed = 1.0
    with pytest.raises(PipelineError, match=r"% sit in layers that cannot be pruned") as err:
        check_reachable(templates, 0.5)
    assert "max_layer_pruning" not in str(err.value)


def test_a_decision_short_of_the_target_is_refused_and_rounding_is_not():
    check_achieved(0.495, 0.5)
    with pytest.raises(PipelineError, match="short of the 50% target"):
        check_achieved(0.48, 0.5)


@pytest.fixture
def dense(tmp_path, params) -> Path:
    """An untrained tiny Unet saved as a dense model folder."""
    cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate(params["train"]).model_dump()
    save_model(tiny_unet(params), tmp_path / "dense", {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5,
                                                       "cost_size": 64, "metrics": {"val/iou": 0.0}, "train": train})
    return tmp_path / "dense"


def test_the_prune_stage_stops_on_an_unreachable_target_with_one_line_and_writes_nothing(
        dense, tiny_data, params, tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**params, "prune": {**params["prune"], "max_layer_pruning": 0.1}}))
    outputs = {"--out": tmp_path / "pruned", "--report": tmp_path / "prune.json", "--logs": tmp_path / "logs"}
    with pytest.raises(SystemExit) as stopped:
        prune.main(["--params", str(path), "--method", "hqs_l0", "--macs-reduction", "0.5", "--model", str(dense),
                    "--data", str(tiny_data), *(str(v) for item in outputs.items() for v in item)])
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "max_layer_pruning" in error and "50%" in error
    assert not any(p.exists() for p in outputs.values())


def test_recalibration_reestimates_every_batchnorm_over_one_pass_of_training_crops(tiny_data, params):
    model = tiny_unet(params).eval()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_var.clone() for m in norms]
    train = TrainCfg.model_validate(params["train"])
    recalibrate_bn(model, tiny_data, train, 0, TrainerCfg.model_validate(params["trainer"]))
    batches = len(SegmentationData(tiny_data, train).train_dataloader())
    assert all(int(m.num_batches_tracked) == batches for m in norms)
    assert all(not torch.allclose(m.running_var, old) for m, old in zip(norms, before, strict=True))
    assert not model.training and all(m.momentum == 0.1 for m in norms)
