"""bench/on_pldu.py: a model scored on the test split and all images at its threshold; one line for a bad folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench import on_pldu
from pipeline.artifact import save_model
from pipeline.config import ModelCfg, TrainCfg
from pipeline.models import create_model
from pipeline.scoring import scores, split_counts


def test_all_images_are_the_splits_pooled_at_the_models_threshold(tmp_path, tiny_data, params, monkeypatch):
    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    model = create_model(cfg)
    card = {"model": cfg.model_dump(), "num_classes": 2, "cost_size": 64, "threshold": 0.45,
            "train": TrainCfg.model_validate(params["train"]).model_dump()}
    save_model(model, tmp_path / "model", card)
    monkeypatch.setattr(on_pldu, "prepared_data", lambda cfg, base, out: tiny_data)
    on_pldu.main(["--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"), "--bootstrap", "100"])

    result = json.loads((tmp_path / "out" / "on_pldu.json").read_text())
    splits = result["splits"]
    assert result["threshold"] == 0.45 and set(splits) == {"test", "train", "all"}
    model.eval()
    pooled = [split_counts(model, tiny_data, 0.45, split) for split in ("train", "val", "test")]
    assert splits["all"]["images"] == sum(len(table["names"]) for table in pooled) == 16
    every = {key: sum((table[key] for table in pooled), []) for key in pooled[0] if key != "names"}
    assert splits["all"]["iou"]["mean"] == pytest.approx(float(scores(every)["iou"]))
    assert splits["test"]["tol_f1"]["mean"] == pytest.approx(float(scores(pooled[2])["tol_f1"]))
    low, high = splits["all"]["iou"]["ci95"]
    assert low <= splits["all"]["iou"]["mean"] <= high
    assert "| all | 16 |" in (tmp_path / "out" / "on_pldu.md").read_text()
    train = pooled[0]
    assert splits["train"]["images"] == len(train["names"])
    assert splits["train"]["tol_f1"]["mean"] == pytest.approx(float(scores(train)["tol_f1"]))
    recall = [hit / n for hit, n in zip(train["tol_true_hit"], train["tol_true"], strict=True) if n]
    assert splits["train"]["per_photo"]["median_tol_recall"] == pytest.approx(float(np.median(recall)))


def test_per_photo_counts_the_photos_that_fall_short():
    table = {"tol_true_hit": [9, 1, 0, 5], "tol_true": [10, 10, 0, 10],  # recalls 0.9, 0.1, -, 0.5
             "tol_pred_hit": [1, 8, 0, 2], "tol_pred": [10, 10, 0, 4]}  # precisions 0.1, 0.8, -, 0.5
    assert on_pldu.per_photo(table) == {"median_tol_recall": 0.5, "recall_under_0.5": 1,
                                        "median_tol_precision": 0.5, "precision_under_0.3": 1}


def test_a_folder_without_a_model_fails_in_one_line_naming_it(tmp_path):
    with pytest.raises(SystemExit, match=f"{tmp_path}: not a model folder"):
        on_pldu.main(["--model", str(tmp_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
