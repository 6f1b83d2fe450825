"""Interruption: a training stage killed mid-run resumes on the next `dvc repro` and ends
with the same weights as a run never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.artifact import WEIGHTS, save_model
from pipeline.config import ModelCfg, PruneCfg, TrainCfg, TrainerCfg
from pipeline.data.datamodule import EpochSampler
from pipeline.models import create_model
from pipeline.pruning.methods import HqsSparsifier
from pipeline.pruning.run import prune
from pipeline.resume import ResumeStore
from tests.conftest import copy_project, run

# 3 epochs of 12 batches per baseline candidate (Unet, FPN): long enough to be killed mid-run
LONGER = {"prepare": {"synthetic": {"n_train": 48}}, "train": {"epochs": 3}}
REPRO = [sys.executable, "-m", "dvc", "repro", "baseline"]


def weights(project: Path) -> dict[str, torch.Tensor]:
    return torch.load(project / "checkpoints" / "baseline" / WEIGHTS, weights_only=True)


def candidates(project: Path) -> dict:
    return json.loads((project / "reports" / "baseline.json").read_text())["candidates"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("whole"), LONGER)
    run(REPRO, project)
    return project


def epoch_ends(resume: Path, seen: dict[Path, float]) -> int:
    """Count the epoch-end checkpoints written under `resume` since the last call."""
    new = 0
    for ckpt in resume.glob("*/checkpoints/last.ckpt"):
        try:
            stamp = ckpt.stat().st_mtime_ns
        except FileNotFoundError:  # being replaced right now
            continue
        new += seen.get(ckpt) != stamp
        seen[ckpt] = stamp
    return new


def kill_after(project: Path, sig: signal.Signals, epochs: int, log: Path) -> int:
    """Start `dvc repro baseline`, send `sig` to its whole process group (dvc and the stage)
    a moment after the `epochs`-th epoch-end checkpoint; return the exit status."""
    with log.open("w") as out:
        proc = subprocess.Popen(REPRO, cwd=project, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    seen: dict[Path, float] = {}
    done = 0
    while proc.poll() is None and done < epochs:
        done += epoch_ends(project / ".resume", seen)
        time.sleep(0.02)
    assert proc.poll() is None, f"the stage ended before it could be killed:\n{log.read_text()[-2000:]}"
    time.sleep(0.3)  # into the next epoch's batches
    os.killpg(proc.pid, sig)
    status = proc.wait(timeout=120)
    deadline = time.time() + 120
    while time.time() < deadline:  # the stage process may outlive dvc briefly (SIGTERM: it stops at a batch)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return status
        time.sleep(0.1)
    raise AssertionError("the stage did not stop")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "epochs"), [(signal.SIGTERM, 2), (signal.SIGKILL, 4)],
                         ids=["sigterm-in-first-candidate", "sigkill-in-second-candidate"])
def test_a_killed_stage_resumes_to_the_same_weights(uninterrupted, tmp_path, sig, epochs):
    project = copy_project(tmp_path / "project", LONGER)
    status = kill_after(project, sig, epochs, tmp_path / "killed.log")
    assert status != 0
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM" in (tmp_path / "killed.log").read_text()
    assert not (project / "checkpoints" / "baseline" / WEIGHTS).exists()  # nothing half-made for later stages
    assert list((project / ".resume").glob("*/checkpoints/last.ckpt"))
    out = run(REPRO, project)
    assert "Running stage 'baseline'" in out and "resuming after epoch" in out  # not a fresh start
    if sig == signal.SIGKILL:  # the first candidate had finished: replayed, not trained again
        assert "already trained" in out
    reference, resumed = weights(uninterrupted), weights(project)
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert candidates(project) == candidates(uninterrupted)  # every candidate's val/test metrics
    assert not any((project / ".resume").iterdir())  # cleared once the outputs were written


def test_an_epoch_draws_the_same_items_whatever_the_global_rng_did():
    first = list(EpochSampler(20, seed=3, epoch=lambda: 2))
    torch.rand(100)  # e.g. a resumed run's model set-up consumed random numbers
    assert list(EpochSampler(20, seed=3, epoch=lambda: 2)) == first
    assert sorted(i for i, _ in first) == list(range(20))
    assert list(EpochSampler(20, seed=3, epoch=lambda: 1)) != first  # control: other epochs differ
    assert list(EpochSampler(20, seed=4, epoch=lambda: 2)) != first


class Crash(Exception):
    """Stands in for the process dying mid-epoch."""


@pytest.fixture
def dense(tmp_path, params) -> Path:
    """An untrained tiny Unet saved as a dense model folder, as the loss stage writes one."""
    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    save_model(create_model(cfg), tmp_path / "dense", {"model": cfg.model_dump(), "num_classes": 2, "cost_size": 64,
                                                       "train": TrainCfg.model_validate(params["train"]).model_dump()})
    return tmp_path / "dense"


def test_hqs_sparsification_resumes_to_the_same_decision_and_weights(dense, tiny_data, params, tmp_path, monkeypatch):
    """The sparsifier's own state (its schedule, λ, Fisher metric and z) resumes too."""
    cfg = PruneCfg.model_validate({**params["prune"], "epochs": 3})  # 2 steps per epoch
    trainer = TrainerCfg.model_validate(params["trainer"])

    def pruned(name: str):
        store = ResumeStore(tmp_path / name, "prune", {})
        model, _, record = prune(dense, tiny_data, "hqs_l0", 0.5, cfg, trainer, 0, tmp_path / f"{name}-logs", store)
        return model.state_dict(), record["templates"]

    reference = pruned("whole")
    original = HqsSparsifier.on_train_batch_end

    def dies_at_step_3(self, trainer, *args):  # epoch 1, its second batch
        original(self, trainer, *args)
        if trainer.global_step == 3:
            raise Crash

    monkeypatch.setattr(HqsSparsifier, "on_train_batch_end", dies_at_step_3)
    with pytest.raises(Crash):
        pruned("killed")
    monkeypatch.undo()
    assert len(list((tmp_path / "killed").glob("*/checkpoints/last.ckpt"))) == 1
    weights, templates = pruned("killed")
    assert templates == reference[1]  # the kept channels and every template magnitude
    assert weights.keys() == reference[0].keys()
    assert all(torch.equal(weights[k], reference[0][k]) for k in weights)
