"""The prepare stage: deterministic output, splits, class folding, failure leaves nothing."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.prepare import assign_splits, prepare
from pipeline.errors import DataError
from tests.conftest import ROOT, require_shared


def write_folder(root: Path, n: int = 6, bad: str | None = None) -> Path:
    """A folder source of n small images with masks holding line and tower pixels."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        mask = np.zeros((40, 48), np.uint8)
        mask[10, :] = 1
        mask[20:25, 5:9] = 2
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    if bad:
        data = (root / "images" / f"{bad}.png").read_bytes()
        (root / "images" / f"{bad}.png").write_bytes(data[: len(data) // 2])
    return root


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
    assert 0.002 < fractions["line"] < 0.06 and sum(fractions.values()) == pytest.approx(1.0)


def test_towers_are_background_unless_enabled(tmp_path):
    root = write_folder(tmp_path / "src")
    without = prepare(folder_cfg(root), BaseCfg(), tmp_path / "a")
    with_towers = prepare(folder_cfg(root), BaseCfg(towers=True), tmp_path / "b")
    assert without["splits"]["train"]["fractions"]["tower"] == 0
    assert with_towers["splits"]["train"]["fractions"]["tower"] > 0
    assert with_towers["classes"] == ["background", "line", "tower"]


def test_a_bad_file_stops_prepare_and_leaves_the_old_output_intact(tmp_path):
    root = write_folder(tmp_path / "src", bad="im3")
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "old.txt").write_text("previous output")
    with pytest.raises(DataError, match="im3.png"):
        prepare(folder_cfg(root), BaseCfg(), out)
    assert (out / "old.txt").read_text() == "previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "src"]  # no temporary folder left


def test_skip_bad_skips_and_counts(tmp_path):
    root = write_folder(tmp_path / "src", bad="im3")
    manifest = prepare(folder_cfg(root, skip_bad=True), BaseCfg(), tmp_path / "out")
    assert manifest["skipped"]["count"] == 1 and "im3.png" in manifest["skipped"]["errors"][0]
    assert len(manifest["files"]) == 5


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


def test_cli_error_is_one_line_naming_the_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prepare: {source: synthetic, synthetic: {n_trian: 3}}\n")
    done = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare", "--params", str(params),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and str(params) in done.stderr and "n_trian" in done.stderr
    assert not (tmp_path / "out").exists()


def test_pldu_prepares_with_the_committed_split(tmp_path):
    root = require_shared("pld-uav", "PLDU")
    split = json.loads((ROOT / "data" / "splits" / "pldu.json").read_text())
    manifest = prepare(PrepareCfg(source="pld-uav", root=str(root)), BaseCfg(), tmp_path / "out")
    for name in ("train", "val", "test"):
        assert manifest["splits"][name]["images"] == len(split[name])
        assert {f["name"] for f in manifest["files"] if f["split"] == name} == set(split[name])
    orientations = {(f["height"], f["width"]) for f in manifest["files"]}
    assert orientations == {(540, 360), (360, 540)}
