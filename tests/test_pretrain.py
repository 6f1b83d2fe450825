"""`pretrain`: the baseline stage trains on synthetic wires first, then on the prepared data
from those weights; off by default; bad settings fail with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import pipeline.study
from pipeline.artifact import load_model
from pipeline.params import load_sections
from pipeline.pretrain import state_hash
from pipeline.sections import PretrainCfg
from pipeline.stages import baseline
from tests.conftest import ROOT

TINY_SYNTHETIC = {"n_train": 4, "n_val": 2, "n_test": 2, "height": 64, "width": 64, "renderer": "wires"}


def write_params(folder: Path, params: dict, pretrain: dict | None) -> Path:
    """Tiny params (one candidate) with this `pretrain` section."""
    params = {**params, "baseline": {**params["baseline"], "candidates": [{}]}}
    if pretrain is not None:
        params["pretrain"] = pretrain
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_baseline(params: Path, data: Path, out: Path, resume: Path | None = None) -> dict:
    args = ["--params", str(params), "--data", str(data), "--out", str(out / "model"), "--report",
            str(out / "baseline.json"), "--plot", str(out / "baseline.png"), "--logs", str(out / "logs")]
    baseline.main(args + (["--resume-dir", str(resume)] if resume else []))
    return json.loads((out / "baseline.json").read_text())


def test_default_params_leave_pretraining_off():
    pretrain, = load_sections(ROOT / "params.yaml", "pretrain")
    assert pretrain.enabled is False
    assert PretrainCfg().enabled is False


def test_real_training_starts_from_the_pretrained_weights(params, tiny_data, tmp_path, monkeypatch):
    starts = []  # the hash of the weights each real (study) training starts from; None: from scratch
    real_fit = pipeline.study.fit

    def spy(*args, **kwargs):
        starts.append(state_hash(kwargs["model"]) if kwargs.get("model") is not None else None)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(pipeline.study, "fit", spy)
    scratch = run_baseline(write_params(tmp_path, params, None), tiny_data, tmp_path / "scratch")
    assert scratch["pretrain"] == {"enabled": False} and starts == [None]

    (tmp_path / "on").mkdir()
    on = write_params(tmp_path / "on", params, {"enabled": True, "epochs": 1, "synthetic": TINY_SYNTHETIC})
    record = run_baseline(on, tiny_data, tmp_path / "pre", resume=tmp_path / "resume")
    run = record["pretrain"]["runs"]["Unet-resnet18"]
    assert record["pretrain"]["enabled"] and record["pretrain"]["synthetic"]["renderer"] == "wires"
    assert run["epochs"] == 1 and "val/iou_tuned" in run["metrics"] and 0 < run["threshold"] < 1
    assert starts[1] == run["weights"]  # the real training began from the pretrained model
    assert (tmp_path / "pre" / "logs" / "pretrain-Unet-resnet18").is_dir()
    assert not list((tmp_path / "resume").glob("pretrain-data-*"))  # the kept synthetic set is cleared

    # same seed and budget, different start: different final weights
    trained, scratch_model = load_model(tmp_path / "pre" / "model")[0], load_model(tmp_path / "scratch" / "model")[0]
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(),
                                                     scratch_model.state_dict().values(), strict=True))


@pytest.mark.parametrize(("pretrain", "expected"), [
    ({"enabled": True, "epochs": 0}, "pretrain.epochs: Input should be greater than or equal to 1"),
    ({"enabled": True, "synthetic": {"n_train": 5000}}, "pretrain.synthetic.n_train"),
    ({"enabled": True, "epoch": 3}, "pretrain.epoch: unknown key; did you mean 'epochs'?"),
    ({"enabled": True, "synthetic": {**TINY_SYNTHETIC, "backgrounds": "no/such/folder"}},
     "no/such/folder: synthetic.backgrounds is not a folder"),
])
def test_bad_pretrain_setting_gives_one_line(pretrain, expected, params, tiny_data, tmp_path, capsys):
    path = write_params(tmp_path, params, pretrain)
    with pytest.raises(SystemExit) as exit_:
        run_baseline(path, tiny_data, tmp_path / "out")
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
