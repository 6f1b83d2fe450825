"""bench/sim2real.py on a tiny stand-in for PLDU (seconds): one arm end to end with the run it
starts from, the records' fields and hashes, resuming, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from bench import sim2real, sim2real_runs
from bench.records import code_hash, folder_hash, weights_hash
from pipeline.artifact import load_model


@pytest.fixture
def tiny_config(tmp_path, params) -> Path:
    """The tiny pipeline params, a 4-image synthetic set and a short bootstrap."""
    config = {key: params[key] for key in ("base", "model", "train", "trainer")}
    config["bench"] = {"seeds": [0], "bootstrap": 100}
    config["pretrain"] = {"enabled": True, "epochs": 1, "synthetic": {
        "n_train": 4, "n_val": 2, "n_test": 1, "height": 64, "width": 64, "renderer": "wires"}}
    path = tmp_path / "sim2real.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pretrain_finetune_arm_end_to_end(tiny_config, tiny_data, tmp_path, capsys, monkeypatch):
    starts = []  # the weights each PLDU training starts from (None: from scratch)
    real_fit = sim2real_runs.fit

    def spy(*args, **kwargs):
        model = kwargs.get("model")
        starts.append(None if model is None else {k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(sim2real_runs, "fit", spy)
    args = ["--config", str(tiny_config), "--data", str(tiny_data), "--work", str(tmp_path / "work"),
            "--out", str(tmp_path / "out"), "--arms", "pretrain_finetune"]
    sim2real.main(args)
    records = tmp_path / "out" / "sim2real"
    synthetic = json.loads((records / "seed0" / "synthetic.json").read_text())
    tuned = json.loads((records / "seed0" / "pretrain_finetune.json").read_text())
    (synthetic_set,) = (tmp_path / "work").glob("pretrain-data-*")
    assert synthetic["inputs"]["code"] == tuned["inputs"]["code"] == code_hash("bench.sim2real_runs")
    assert synthetic["inputs"]["start"] == "" and tuned["inputs"]["start"] == synthetic["model_hash"]
    assert tuned["inputs"]["data"] == synthetic["inputs"]["data"] != folder_hash(tiny_data)
    assert synthetic_set.is_dir() and folder_hash(synthetic_set) != folder_hash(tiny_data)
    assert tuned["model_hash"] == weights_hash(tmp_path / "work" / "seed0" / "pretrain_finetune" / "model")
    assert tuned["model_hash"] != synthetic["model_hash"]
    pretrained = load_model(tmp_path / "work" / "seed0" / "synthetic" / "model")[0].state_dict()
    (start,) = starts  # fine-tuning began from the synthetic arm's model
    assert start is not None and all(torch.equal(start[k], v) for k, v in pretrained.items())
    for record in (synthetic, tuned):
        assert record["seed"] == 0 and record["seconds"] > 0 and record["epochs"] == 1 and record["steps"] >= 1
        assert len(record["test_counts"]["names"]) == 4 and len(record["all_counts"]["names"]) == 16
        assert set(record["test_counts"]) == set(record["all_counts"]) >= {"names", "tp", "fp", "fn"}
        assert 0 < record["threshold"] < 1 and "val/iou_tuned" in record["metrics"] and record["versions"]["torch"]
    assert "synthetic_metrics" in synthetic and tuned["start_steps"] == synthetic["steps"]
    assert tuned["start_seconds"] == synthetic["seconds"]

    summary = json.loads((tmp_path / "out" / "sim2real.json").read_text())
    (row,) = summary["rows"]
    assert row["arm"] == "pretrain_finetune" and row["test"]["images"] == 4 and row["all"]["images"] == 16
    assert row["test"]["iou"]["method"] == "BCa" and row["steps"] == [tuned["steps"] + synthetic["steps"]]
    assert summary["goal"]["met"] is None and "pretrain_finetune" in (tmp_path / "out" / "sim2real.md").read_text()

    capsys.readouterr()
    sim2real.main(args)  # everything current: nothing is trained again
    assert "running" not in capsys.readouterr().out
    assert json.loads((records / "seed0" / "pretrain_finetune.json").read_text()) == tuned


def test_unknown_arm_and_early_stopping_are_refused(tiny_config, tmp_path):
    config = yaml.safe_load(tiny_config.read_text())
    config["train"]["early_stopping_patience"] = 3
    tiny_config.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="early_stopping_patience must be 0"):
        sim2real.load_config(tiny_config)
    with pytest.raises(SystemExit):
        sim2real.main(["--config", str(tiny_config), "--arms", "sim"])
