"""Reproducibility: the same params and seed give identical weights and metrics on the CPU;
dvc.lock and the DVC cache bring back any earlier compressed model."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml

from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.train import fit
from tests.conftest import reset_project, run

DVC = [sys.executable, "-m", "dvc"]


def _fit(params, data, logs, seed):
    model_cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate({**params["train"], "epochs": 1})
    return fit(model_cfg, train, TrainerCfg.model_validate(params["trainer"]), data, logs, seed)


def test_same_seed_same_weights_and_metrics_other_seed_differs(tiny_data, params, tmp_path):
    first = _fit(params, tiny_data, tmp_path / "a", 0)
    again = _fit(params, tiny_data, tmp_path / "b", 0)
    other = _fit(params, tiny_data, tmp_path / "c", 1)
    assert first.metrics == again.metrics and first.threshold == again.threshold
    weights = [r.module.model.state_dict() for r in (first, again, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # control: the comparison can fail (another seed draws other crops and initial weights)
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def _without_time(record: dict) -> dict:
    """A stage record less its wall_seconds: the one field that measures the run, not its result."""
    assert "wall_seconds" in record  # the record does time the stage: the comparison below skips only that
    return {key: value for key, value in record.items() if key != "wall_seconds"}


@pytest.mark.slow
def test_a_stage_run_twice_gives_identical_outputs_and_dvc_checkout_restores_an_earlier_model(tiny_project):
    project, _ = tiny_project
    reset_project(project)
    final = project / "checkpoints" / "final" / "hqs_l0-0.5"
    report = project / "reports" / "finetune" / "hqs_l0-0.5.json"
    committed = (final / "model.pt").read_bytes(), _without_time(json.loads(report.read_text()))
    try:
        # the same params and seed again; --single-item: the stage alone (--force alone re-runs
        # everything upstream too, about 100 s more; the in-process test above covers training)
        run([*DVC, "repro", "--force", "--single-item", "finetune@hqs_l0-0.5"], project)
        assert _without_time(json.loads(report.read_text())) == committed[1]  # every figure but the stage's wall time
        assert (final / "model.pt").read_bytes() == committed[0]
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["finetune"]["lr"] = 0.01
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        run([*DVC, "repro", "finetune@hqs_l0-0.5"], project)
        assert (final / "model.pt").read_bytes() != committed[0]  # control: another model now
        # the way back to any commit: git brings params, dvc.lock and the small metrics files,
        # DVC the cached models (dvc.lock was staged by DVC's autostage: checkout from HEAD)
        run(["git", "checkout", "-q", "HEAD", "--", "."], project)
        run([*DVC, "checkout"], project)
        assert (final / "model.pt").read_bytes() == committed[0]
        assert "up to date" in run([*DVC, "status"], project)
    finally:
        reset_project(project)
