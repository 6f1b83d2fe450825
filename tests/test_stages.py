"""One smoke test per training stage (Lightning's fast_dev_run on the tiny config), plus the
pieces they share: crops, padding, policies and the selection rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import AugmentCfg, TrainCfg
from pipeline.data.datamodule import PreparedSplit, build_policy, pad_collate, train_transform
from pipeline.errors import PipelineError
from pipeline.selection import SCORE
from pipeline.stages import augment, baseline, loss
from pipeline.study import pick


@pytest.fixture(scope="module")
def smoke_params(tmp_path_factory, params) -> Path:
    """Tiny params with fast_dev_run and two options per study."""
    smoke = {**params, "trainer": {**params["trainer"], "fast_dev_run": 2}}
    smoke["baseline"] = {**params["baseline"], "candidates": [{}, {"arch": "FPN"}]}
    path = tmp_path_factory.mktemp("smoke") / "params.yaml"
    path.write_text(yaml.safe_dump(smoke))
    return path


def stage_args(params: Path, tiny_data: Path, out: Path, name: str, model: Path | None = None) -> list[str]:
    args = ["--params", str(params), "--data", str(tiny_data), "--out", str(out / name),
            "--report", str(out / f"{name}.json"), "--plot", str(out / f"{name}.png"), "--logs", str(out / "logs")]
    return args + (["--model", str(model)] if model else [])


def test_baseline_augment_loss_chain(smoke_params, tiny_data, tmp_path):
    baseline.main(stage_args(smoke_params, tiny_data, tmp_path, "baseline"))
    record = json.loads((tmp_path / "baseline.json").read_text())
    assert set(record["candidates"]) == {"Unet-resnet18", "FPN-resnet18"}
    assert record["winner"] in record["candidates"] and "rule" in record
    assert (tmp_path / "baseline" / "model.pt").exists() and (tmp_path / "baseline.png").exists()

    augment.main(stage_args(smoke_params, tiny_data, tmp_path, "augment", tmp_path / "baseline"))
    record = json.loads((tmp_path / "augment.json").read_text())
    assert set(record["candidates"]) == set(AugmentCfg.model_validate(yaml.safe_load(smoke_params.read_text())
                                                                     ["augment"]).compare)
    assert record["start"]["variant"] == json.loads((tmp_path / "baseline" / "model.json").read_text())["variant"]

    loss.main(stage_args(smoke_params, tiny_data, tmp_path, "dense", tmp_path / "augment"))
    meta = json.loads((tmp_path / "dense" / "model.json").read_text())
    assert meta["train"]["loss"] == json.loads((tmp_path / "dense.json").read_text())["winner"]
    assert 0 < meta["threshold"] < 1


def test_study_with_an_undefined_option_names_it(tmp_path):
    with pytest.raises(ValueError, match="fog"):
        AugmentCfg(compare=["fog"], policies={"none": []})


def test_pick_prefers_fewer_macs_within_tolerance_and_is_deterministic():
    rows = {"big": {SCORE: 0.50, "gmacs": 9.0}, "small": {SCORE: 0.49, "gmacs": 2.0},
            "tiny": {SCORE: 0.30, "gmacs": 0.5}}
    assert pick(rows, tolerance=0.02) == "small"
    assert pick(rows, tolerance=0.0) == "big"
    tie = {"b": {SCORE: 0.5, "gmacs": 1.0}, "a": {SCORE: 0.5, "gmacs": 1.0}}
    assert pick(tie, tolerance=0.0) == "a"
    # equal MACs (augment, loss: one architecture): the higher score, as the pick stage decides
    same = {"a": {SCORE: 0.49, "gmacs": 1.0}, "b": {SCORE: 0.5, "gmacs": 1.0}}
    assert pick(same, tolerance=0.02) == "b"
    # a drop of exactly the tolerance qualifies, float sums or not (the pick stage's slack)
    assert pick({"best": {SCORE: 0.42, "gmacs": 2.0}, "lean": {SCORE: 0.41, "gmacs": 1.0}}, tolerance=0.01) == "lean"


def test_unknown_transform_is_refused():
    with pytest.raises(PipelineError, match="Fog"):
        build_policy([{"name": "Fog", "p": 1.0}])


def test_training_crops_mostly_hold_line_pixels(tiny_data):
    def share_with_lines(fraction: float) -> float:
        cfg = TrainCfg(crop_size=32, line_crop_fraction=fraction)
        split = PreparedSplit(tiny_data, "train", train_transform(cfg))
        torch.manual_seed(0)
        hits = [bool((split[i % len(split)]["mask"] == 1).any()) for i in range(64)]
        return float(np.mean(hits))

    biased, plain = share_with_lines(1.0), share_with_lines(0.0)
    assert biased > 0.8 and biased > plain


def test_eval_batches_pad_both_orientations_to_32_with_ignore():
    portrait = {"image": torch.ones(3, 54, 36), "mask": torch.ones(54, 36, dtype=torch.long), "name": "p"}
    landscape = {"image": torch.ones(3, 36, 54), "mask": torch.zeros(36, 54, dtype=torch.long), "name": "l"}
    batch = pad_collate([portrait, landscape])
    assert batch["image"].shape == (2, 3, 64, 64)
    assert (batch["mask"][0, 54:] == 255).all() and (batch["mask"][0, :, 36:] == 255).all()
    assert (batch["mask"][0, :54, :36] == 1).all() and (batch["mask"][1, :36, :54] == 0).all()
