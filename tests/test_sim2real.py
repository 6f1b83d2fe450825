"""bench/sim2real.py on a tiny stand-in for PLDU (seconds): one arm end to end with the run it
starts from, the records' fields and hashes, resuming, the summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from bench import sim2real, sim2real_runs
from bench.records import code_hash, folder_hash, weights_hash
from pipeline.artifact import load_model
from pipeline.labels import IGNORE_INDEX, LINE
from tests.conftest import ROOT


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
    (synthetic_set,) = (tmp_path / "work").glob("generator-*/pretrain-data-*")
    assert synthetic_set.parent.name == sim2real.kept_set_folder()
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
    assert row["arm"] == "pretrain_finetune" and row["test"]["images"] == 4
    assert "all" not in row  # it trained and selected on the other images
    assert row["test"]["iou"]["method"] == "BCa" and row["steps"] == [tuned["steps"] + synthetic["steps"]]
    assert summary["goal"]["met"] is None and "pretrain_finetune" in (tmp_path / "out" / "sim2real.md").read_text()

    capsys.readouterr()
    sim2real.main(args)  # everything current: nothing is trained again
    assert "running" not in capsys.readouterr().out
    assert json.loads((records / "seed0" / "pretrain_finetune.json").read_text()) == tuned


def test_a_prepared_sets_hash_ignores_where_it_was_prepared_but_not_its_pixels(tiny_data, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_data, elsewhere)
    manifest = json.loads((elsewhere / "manifest.json").read_text())
    manifest.update(root="/another/clone/data", split_file="/another/clone/splits.json")
    manifest["files"][0]["meta"]["path"] = "/another/clone/data/0.png"
    (elsewhere / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert folder_hash(elsewhere) == folder_hash(tiny_data)
    mask = next((elsewhere / "train" / "masks").glob("*.png"))
    cv2.imwrite(str(mask), 255 - cv2.imread(str(mask), cv2.IMREAD_UNCHANGED))
    assert folder_hash(elsewhere) != folder_hash(tiny_data)


def test_pldu_only_arms_are_keyed_without_the_renderer_and_sets_with_it(monkeypatch):
    original, base = sim2real.code_text, sim2real.real_code_hash()

    def edited(name: str):
        return lambda path: original(path) + ("# edited" if path.name == name else "")

    monkeypatch.setattr(sim2real, "code_text", edited("wires.py"))
    assert sim2real.real_code_hash() == base  # a renderer change keeps the PLDU-only records
    monkeypatch.setattr(sim2real, "code_text", edited("train.py"))
    assert sim2real.real_code_hash() != base  # a training change does not
    assert base != code_hash("bench.sim2real_runs")  # the arms that use synthetic data hash the renderer too


def test_any_generator_change_renders_a_new_kept_set(monkeypatch):
    from bench import records

    kept, original = sim2real.kept_set_folder(), records.code_text
    try:
        for name in ("camera.py", "wires.py"):  # camera.py is not in GENERATOR; the set must still change
            monkeypatch.setattr(records, "code_text",
                                lambda path, name=name: original(path) + ("# edited" if path.name == name else ""))
            sim2real.code_hash.cache_clear()
            assert sim2real.kept_set_folder() != kept
    finally:
        monkeypatch.undo()
        sim2real.code_hash.cache_clear()
    assert sim2real.kept_set_folder() == kept


def test_unknown_arm_and_early_stopping_are_refused(tiny_config, tmp_path):
    config = yaml.safe_load(tiny_config.read_text())
    config["train"]["early_stopping_patience"] = 3
    tiny_config.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="early_stopping_patience must be 0"):
        sim2real.load_config(tiny_config)
    with pytest.raises(SystemExit):
        sim2real.main(["--config", str(tiny_config), "--arms", "sim"])


def test_the_preset_validates_and_caps_the_synthetic_set():
    bench, sections = sim2real.load_config(ROOT / "bench" / "sim2real.yaml")
    assert bench.seeds == [0, 1, 2] and bench.arms == list(sim2real.ARMS)
    assert sections["pretrain"].synthetic.n_train <= 1000 and sections["pretrain"].synthetic.renderer == "wires"
    assert sections["prepare"].source == "pld-uav" and not sections["train"].early_stopping_patience


def fake_run(arm: str, seed: int, tp: int) -> dict:
    """A record whose 20 test images (and 30 in all) each have `tp` true positives of 10 lines."""
    def table(n: int) -> dict:
        return {"names": [f"im{i:02d}" for i in range(n)], "tp": [tp + i % 2 for i in range(n)],
                "fp": [2] * n, "fn": [10 - tp] * n, "tol_pred_hit": [tp] * n, "tol_pred": [tp + 2] * n,
                "tol_true_hit": [tp] * n, "tol_true": [10] * n}
    return {"arm": arm, "seed": seed, "epochs": 3, "steps": 30, "seconds": 60.0, "val_score": 0.5,
            "machine": {"torch_threads": 1 if seed else 2},
            "test_counts": table(20), "all_counts": table(30),
            **({"start_steps": 50, "start_seconds": 120.0} if arm == "pretrain_finetune" else {})}


@pytest.mark.parametrize(("pretrained_tp", "met"), [(7, True), (5, False)])
def test_the_goal_needs_two_points_with_the_interval_above_zero(pretrained_tp, met):
    from bench.sim2real_summary import markdown, summarise
    from pipeline.scoring import COUNTS

    assert set(fake_run("pldu", 0, 5)["test_counts"]) == {"names", *COUNTS}
    runs = {"pretrain_finetune": [fake_run("pretrain_finetune", s, pretrained_tp) for s in range(3)],
            "pldu_equal_steps": [fake_run("pldu_equal_steps", s, 5) for s in range(3)],
            "synthetic": [fake_run("synthetic", s, 3) for s in range(3)]}
    summary = summarise(runs, [], 200)
    assert summary["goal"]["met"] is met
    (row,) = [r for r in summary["rows"] if r["arm"] == "pretrain_finetune"]
    assert row["steps"] == [80] * 3 and row["minutes"]["mean"] == pytest.approx(3.0)  # pretraining counted
    md = markdown({**summary, "config": "sim2real.yaml", "commit": "0" * 40})
    assert row["threads"] == [1, 2] and "| 3.0 ± 0.0 (1/2) |" in md  # how the time was measured
    assert row["test"]["images"] == 20 and "all" not in row  # PLDU-trained: no score on its training images
    (synthetic,) = [r for r in summary["rows"] if r["arm"] == "synthetic"]
    assert synthetic["all"]["images"] == 30 and synthetic["all"]["iou"]["mean"] == pytest.approx(105 / 375)  # pooled
    assert all(set(c) == {"seeds", "test"} for c in summary["comparisons"].values())
    low, high = row["test"]["iou"]["ci95"]
    assert low <= row["test"]["iou"]["mean"] <= high and row["test"]["iou"]["seeds"]["std"] == 0


def test_a_mean_gain_over_two_points_whose_interval_crosses_zero_misses_the_goal():
    from bench.sim2real_summary import summarise

    def erratic(seed: int) -> dict:
        """Far better on the even images, worse on the odd ones: +0.06 pooled, not on every image."""
        record = fake_run("pretrain_finetune", seed, 5)
        table = record["test_counts"]
        table["tp"] = [10 if i % 2 == 0 else 2 for i in range(20)]
        table["fn"] = [10 - tp for tp in table["tp"]]
        return record

    runs = {"pretrain_finetune": [erratic(s) for s in range(3)],
            "pldu_equal_steps": [fake_run("pldu_equal_steps", s, 5) for s in range(3)]}
    summary = summarise(runs, [], 200)
    gain = summary["comparisons"]["pretrain_finetune - pldu_equal_steps"]["test"]["iou"]
    assert gain["mean"] == pytest.approx(120 / 240 - 110 / 250)  # pooled over the images: >= 0.02
    assert gain["ci95"][0] < 0 < gain["ci95"][1]
    assert summary["goal"]["met"] is False


def test_equal_steps_epochs_by_hand(monkeypatch):
    """5 PLDU epochs + ceil(pretraining steps / PLDU steps per epoch)."""
    from types import SimpleNamespace

    from pipeline.config import TrainCfg

    steps = {"synthetic": 10, "real": 4}  # optimiser steps per epoch of each set
    monkeypatch.setattr(sim2real_runs, "steps_per_epoch", lambda data, train: steps[str(data)])
    b = object.__new__(sim2real.Sim2Real)
    b.synthetic, b.real = Path("synthetic"), Path("real")
    for pretrain_epochs, expected in ((3, 5 + 8), (2, 5 + 5), (4, 5 + 10)):  # 30/4 -> 8, 20/4 -> 5, 40/4 -> 10
        b.sections = {"pretrain": SimpleNamespace(epochs=pretrain_epochs), "train": TrainCfg(epochs=5)}
        assert b.equal_steps_epochs() == expected


def test_outline_labels_keep_a_wires_edges_and_ignore_its_inside():
    from bench.sim2real_outline import outline_mask

    mask = np.zeros((12, 10), np.uint8)
    mask[2] = LINE  # a 1 px wire: all edge
    mask[5:10] = LINE  # a 5 px wire: two edge rows, 3 rows inside
    mask[5:10, 0] = IGNORE_INDEX  # the coverage rule's partly covered pixels stay ignored
    out = outline_mask(mask)
    assert (out[2] == LINE).all() and (out[[5, 9], 1:] == LINE).all()
    assert (out[6:9, 2:] == IGNORE_INDEX).all() and (out[6:9, 1] == LINE).all()  # beside the ignored column
    assert (out[mask == 0] == 0).all() and (out[mask == IGNORE_INDEX] == IGNORE_INDEX).all()


def test_outline_arm_pretrains_on_the_outlined_set_and_fine_tunes_from_it(tiny_config, tiny_data, tmp_path,
                                                                           monkeypatch):
    seen = []  # the sets the pretraining arms trained on
    real_run = sim2real_runs.synthetic_run
    monkeypatch.setattr(sim2real_runs, "synthetic_run", lambda s, data, *a: seen.append(data) or real_run(s, data, *a))
    sim2real.main(["--config", str(tiny_config), "--data", str(tiny_data), "--work", str(tmp_path / "work"),
                   "--out", str(tmp_path / "out"), "--arms", "outline_finetune"])
    records = tmp_path / "out" / "sim2real" / "seed0"
    pretrained = json.loads((records / "synthetic_outline.json").read_text())
    tuned = json.loads((records / "outline_finetune.json").read_text())
    assert pretrained["arm"] == "synthetic_outline" and tuned["inputs"]["start"] == pretrained["model_hash"]
    assert tuned["start_steps"] == pretrained["steps"] and not (records / "synthetic.json").exists()
    (outlined,) = seen
    coverage = outlined.with_name(outlined.name.split("-outline-")[0])
    assert outlined != coverage and json.loads((outlined / "manifest.json").read_text())["labels"]
    names = sorted(p.name for p in (coverage / "train" / "masks").iterdir())
    assert names == sorted(p.name for p in (outlined / "train" / "masks").iterdir())
    line = [sum(int((cv2.imread(str(d / "train" / "masks" / n), cv2.IMREAD_UNCHANGED) == LINE).sum()) for n in names)
            for d in (coverage, outlined)]
    assert 0 < line[1] < line[0]  # the insides of the wider wires are now ignored
    code = sim2real.code_hash("bench.sim2real_runs")
    assert pretrained["inputs"]["code"] not in (code, sim2real.real_code_hash())  # the relabelling is hashed too
