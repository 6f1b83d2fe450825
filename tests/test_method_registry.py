"""The pruning-method registry: every registered method prunes a tiny Unet to its MAC target
and leaves a safely loadable model; names and options blocks are checked against the
registry; params.yaml and dvc.yaml follow it; a new method is one class and one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline.artifact import load_model, save_model
from pipeline.config import ModelCfg, PruneCfg, SweepCfg, TrainCfg, TrainerCfg
from pipeline.errors import PipelineError
from pipeline.measure import macs_and_params
from pipeline.models import create_model
from pipeline.params import parse_section
from pipeline.pruning import registry
from pipeline.pruning.hqs_l0 import keep_by_score
from pipeline.pruning.method import Method, PruneContext
from pipeline.pruning.run import prune
from tests.conftest import ROOT

TARGET = 0.5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dense(tmp_path_factory, params) -> Path:
    """An untrained tiny Unet saved as a dense model folder, as the loss stage writes one."""
    folder = tmp_path_factory.mktemp("dense")
    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    train = TrainCfg.model_validate(params["train"]).model_dump()
    save_model(create_model(cfg), folder, {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5,
                                           "cost_size": 64, "metrics": {"val/iou": 0.0}, "train": train})
    return folder


def prune_and_reload(method: str, dense: Path, data: Path, params: dict, tmp_path: Path, **blocks) -> dict:
    """Prune `dense` by `method` (1 sparsification epoch), save, load back; the record.
    Widths unrounded: the tiny model's layers are so narrow that rounding them to
    params.yaml's round_to (16) moves the cut by several points, whatever the method."""
    cfg = PruneCfg.model_validate({**params["prune"], "epochs": 1, "round_to": None, **blocks})
    trainer = TrainerCfg.model_validate(params["trainer"])
    model, card, record = prune(dense, data, method, TARGET, cfg, trainer, 0, tmp_path / "logs")
    assert card.pruned_channels == record["pruned_channels"]
    save_model(model, tmp_path / "pruned", card)
    assert set(torch.load(tmp_path / "pruned" / "model.pt", weights_only=True)) == set(model.state_dict())
    loaded, _ = load_model(tmp_path / "pruned")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    dense_macs = macs_and_params(load_model(dense)[0], 64)[0]
    assert abs((1 - macs_and_params(loaded, 64)[0] / dense_macs) - TARGET) <= 0.02
    return record


@pytest.mark.parametrize("method", registry.method_names())
def test_every_registered_method_meets_the_mac_target_and_saves_a_loadable_model(method, dense, tiny_data, params,
                                                                                  tmp_path):
    record = prune_and_reload(method, dense, tiny_data, params, tmp_path)
    assert record["method"] == method and abs(record["achieved_reduction"] - TARGET) <= 0.02
    assert record["sparsify_epochs"] == (1 if registry.method_class(method).trains else 0)
    assert isinstance(record["saliency_gap"], float)  # every method records the score it decided on


def test_names_and_options_are_checked_against_the_registry():
    with pytest.raises(PipelineError, match="'hqs'.*did you mean 'hqs_l0'.*valid: hqs_l0, hqs_l0_plain, magnitude"):
        registry.create_method("hqs")
    with pytest.raises(PipelineError, match=r"params.yaml: sweep.methods: .*'lottery' is unknown.*valid: hqs_l0"):
        parse_section({"sweep": {"methods": ["hqs_l0", "lottery"]}}, "sweep", SweepCfg)
    with pytest.raises(PipelineError, match=r"prune.hqs_l0.final_stifness: .*unknown key; did you mean "
                                            r"'final_stiffness'\? \(valid keys: final_stiffness\)"):
        parse_section({"prune": {"hqs_l0": {"final_stifness": 5}}}, "prune", PruneCfg)
    with pytest.raises(PipelineError, match=r"prune.lottery: .*unknown key .*valid keys: epochs, .*, hqs_l0, hqs"):
        parse_section({"prune": {"lottery": {}}}, "prune", PruneCfg)
    with pytest.raises(PipelineError, match=r"prune.final_stiffness: .*it is an option of prune.hqs_l0"):
        parse_section({"prune": {"final_stiffness": 5}}, "prune", PruneCfg)
    with pytest.raises(PipelineError, match=r"prune.bn_l1.reg: Input should be greater than 0"):
        parse_section({"prune": {"bn_l1": {"reg": 0}}}, "prune", PruneCfg)
    for name in registry.method_names():  # every method runs without its block: defaults that work
        assert isinstance(registry.create_method(name), Method)
    cfg = parse_section({"prune": {"hqs_l0": {"final_stiffness": 5}, "random": None}}, "prune", PruneCfg)
    assert cfg.method_options("hqs_l0") == {"final_stiffness": 5.0} and cfg.method_options("bn_l1") == {}
    assert registry.create_method("hqs_l0", cfg.method_options("hqs_l0")).options.final_stiffness == 5.0


def test_the_registry_and_the_config_load_without_torch():
    code = "import sys, pipeline.config, pipeline.pruning.registry; assert 'torch' not in sys.modules, 'torch'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]


def test_params_and_dvc_yaml_follow_the_registry():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # DVC fails on a missing param dependency: every method the sweep may name needs its block
    assert set(registry.method_names()) <= set(params["prune"])
    PruneCfg.model_validate(params["prune"])
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    prune_params = stages["prune"]["params"]
    assert "prune.${item.method}" in prune_params and "prune" not in prune_params
    common = {f"prune.{key}" for key in PruneCfg.model_fields}
    assert common <= set(prune_params)


class TaylorMethod(Method):
    """A data-driven one-shot criterion (what no criterion could be before the context held
    data): |gradient of the mean output w.r.t. each template| over the calibration crops."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        batches: int = Field(2, ge=1)

    seen: list[int] = []  # batches each run scored on (class-wide: the test reads it)

    def keep(self, ctx: PruneContext) -> torch.Tensor:
        score, seen = torch.zeros(ctx.templates.entries), 0
        ctx.model.eval()  # the calibration crops must not move the BN statistics
        for batch in list(ctx.calibration)[: self.options.batches]:
            ctx.model(batch["image"]).mean().backward()
            score += torch.cat([p.grad.abs() for p in ctx.templates.scales])
            ctx.templates.zero_grad()
            seen += 1
        ctx.model.train()
        TaylorMethod.seen.append(seen)
        return keep_by_score(ctx.templates, score, ctx.reduction)


def test_a_new_method_is_one_class_and_one_registry_line(dense, tiny_data, params, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.METHODS, "taylor", f"{__name__}:TaylorMethod")
    assert SweepCfg(methods=["hqs_l0", "taylor"]).methods == ["hqs_l0", "taylor"]
    with pytest.raises(PipelineError, match=r"prune.taylor.batch: .*did you mean 'batches'"):
        parse_section({"prune": {"taylor": {"batch": 1}}}, "prune", PruneCfg)
    record = prune_and_reload("taylor", dense, tiny_data, params, tmp_path, taylor={"batches": 2})
    assert TaylorMethod.seen == [2] and record["sparsify_epochs"] == 0  # it saw the calibration crops
