"""The prepare stage: deterministic output, splits, class folding. Bad input, skip_bad and
the previous output kept on failure: tests/reliability/test_bad_prepare.py."""

from __future__ import annotations

import filecmp
import json
import logging
from pathlib import Path

import pytest

from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.prepare import SPLITS, assign_splits, prepare
from pipeline.errors import DataError
from tests.builders import encode, line_mask, mat_bytes, rgb_array, write, write_folder
from tests.conftest import ROOT, require_shared


def folder_cfg(root: Path, **kw) -> PrepareCfg:
    return PrepareCfg(source="folder", root=str(root), val_fraction=0.2, test_fraction=0.2, **kw)


def test_synthetic_prepare_is_byte_identical_across_runs(tmp_path, params):
    cfg, base = PrepareCfg.model_validate(params["prepare"]), BaseCfg.model_validate(params["base"])
    first, second = prepare(cfg, base, tmp_path / "a"), prepare(cfg, base, tmp_path / "b")
    assert first["splits"] == second["splits"]
    names = [f"{f['split']}/{kind}/{f['name']}.png" for f in first["files"] for kind in ("images", "masks")]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert len(match) == len(names) and not mismatch and not errors
    assert {s: v["images"] for s, v in first["splits"].items()} == {"train": 8, "val": 4, "test": 4}


def test_manifest_records_sizes_fractions_source_and_seed(tiny_data):
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    assert manifest["source"] == "synthetic" and manifest["seed"] == 0
    assert manifest["files"][0]["height"] == 64 and manifest["files"][0]["width"] == 64
    fractions = manifest["splits"]["train"]["fractions"]
    # a minority of line pixels: the wires renderer's 1-8 px conductors cover ~10 % of a 64 px
    # tiny image (3.6 % at the default 192 px); realistic density is test_synthetic's and test_wires'
    assert 0.002 < fractions["line"] < 0.2 and sum(fractions.values()) == pytest.approx(1.0)


def test_towers_are_background_unless_enabled(tmp_path):
    root = write_folder(tmp_path / "src")
    without = prepare(folder_cfg(root), BaseCfg(), tmp_path / "a")
    with_towers = prepare(folder_cfg(root), BaseCfg(towers=True), tmp_path / "b")
    assert without["splits"]["train"]["fractions"]["tower"] == 0
    assert with_towers["splits"]["train"]["fractions"]["tower"] > 0
    assert with_towers["classes"] == ["background", "line", "tower"]


class Tiles:
    """A fake source whose keys come in groups (like overlapping tiles of one region)."""

    def keys(self):
        return [f"r{g}_{t}" for g in range(10) for t in range(4)]

    def group(self, key):
        return key.split("_")[0]

    def fixed_split(self):
        return None


def test_groups_never_straddle_splits():
    split_of = assign_splits(Tiles(), Tiles().keys(), PrepareCfg(val_fraction=0.2, test_fraction=0.2), seed=3)
    for group in {key.split("_")[0] for key in split_of}:
        assert len({s for k, s in split_of.items() if k.startswith(group + "_")}) == 1
    assert sorted(set(split_of.values())) == ["test", "train", "val"]


def test_pldu_prepares_with_the_committed_split(tmp_path):
    root = require_shared("pld-uav", "PLDU")
    split = json.loads((ROOT / "data" / "splits" / "pldu.json").read_text())
    manifest = prepare(PrepareCfg(source="pld-uav", root=str(root)), BaseCfg(), tmp_path / "out")
    for name in ("train", "val", "test"):
        assert manifest["splits"][name]["images"] == len(split[name])
        assert {f["name"] for f in manifest["files"] if f["split"] == name} == set(split[name])
    orientations = {(f["height"], f["width"]) for f in manifest["files"]}
    assert orientations == {(540, 360), (360, 540)}


def pldu_format(root: Path, train_ids: range, test_ids: range) -> Path:
    """A folder in PLD-UAV's layout (train/, train_gt/, test/, test_gt/) of tiny pairs."""
    for subset, ids in (("train", train_ids), ("test", test_ids)):
        for i in ids:
            write(root / subset / f"{i}.jpg", encode(rgb_array(), "JPEG"))
            write(root / f"{subset}_gt" / f"{i}.mat", mat_bytes(line_mask()))
    return root


def split_of(manifest: dict) -> dict[str, str]:
    return {f["name"]: f["split"] for f in manifest["files"]}


def test_another_pldu_folder_gets_a_seeded_random_split_and_says_so(tmp_path, caplog):
    root = pldu_format(tmp_path / "full", train_ids=range(1000, 1014), test_ids=range(1, 7))
    cfg = PrepareCfg(source="pld-uav", root=str(root), val_fraction=0.2, test_fraction=0.2)  # split_file: null
    with caplog.at_level(logging.INFO, logger="pipeline.data"):
        first = prepare(cfg, BaseCfg(seed=0), tmp_path / "a")
    said = [r.getMessage() for r in caplog.records if "split" in r.getMessage()]
    assert len(said) == 1 and "its 20 image ids are not those of data/splits/pldu.json: a random split" in said[0]
    assert {s: first["splits"][s]["images"] for s in SPLITS} == {"train": 12, "val": 4, "test": 4}
    again, other = prepare(cfg, BaseCfg(seed=0), tmp_path / "b"), prepare(cfg, BaseCfg(seed=1), tmp_path / "c")
    assert split_of(again) == split_of(first)
    assert split_of(other) != split_of(first)  # control: the seed decides


def test_a_split_file_names_existing_items_and_leaves_the_others_out(tmp_path):
    root = write_folder(tmp_path / "set", n=6)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"_comment": "x", "train": ["im0", "im1"], "val": ["im2"], "test": ["im3"]}))
    manifest = prepare(folder_cfg(root, split_file=str(split)), BaseCfg(), tmp_path / "out")
    assert split_of(manifest) == {"im0": "train", "im1": "train", "im2": "val", "im3": "test"}
    assert manifest["unassigned"] == 2
    split.write_text(json.dumps({"train": ["im0", "gone"]}))  # a split file made for another folder
    with pytest.raises(DataError, match=r"split\.json: 1 ids not found under .*set"):
        prepare(folder_cfg(root, split_file=str(split)), BaseCfg(), tmp_path / "out")
