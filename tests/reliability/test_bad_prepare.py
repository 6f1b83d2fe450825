"""Bad input seen from the prepare stage: a bad file stops it with one line and leaves the
previous output intact; `prepare.skip_bad` skips and counts; empty masks are kept and counted.

The end-to-end cases run the stage as the user does (a subprocess) and check the exit
status, stderr, the metrics JSON and the bytes of the previous output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.prepare import prepare
from pipeline.errors import DataError
from tests.builders import write_folder
from tests.conftest import ROOT


def folder_cfg(root: Path, **kw) -> PrepareCfg:
    return PrepareCfg(source="folder", root=str(root), val_fraction=0.2, test_fraction=0.2, **kw)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_prepare(tmp_path: Path, root: Path, **prepare_keys) -> subprocess.CompletedProcess:
    """`python -m pipeline.stages.prepare` on a folder source, into tmp_path/out."""
    params = tmp_path / "params.yaml"
    section = {"source": "folder", "root": str(root), "val_fraction": 0.2, "test_fraction": 0.2, **prepare_keys}
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "prepare": section}))
    return subprocess.run(
        [sys.executable, "-m", "pipeline.stages.prepare", "--params", str(params),
         "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "metrics.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_bad_file_fails_the_stage_on_one_line_and_keeps_the_previous_output(tmp_path):
    good = run_prepare(tmp_path, write_folder(tmp_path / "src"))  # positive control, and the previous output
    assert good.returncode == 0, good.stderr
    before, metrics = snapshot(tmp_path / "out"), (tmp_path / "metrics.json").read_bytes()
    assert len(before) == 13  # 6 images + 6 masks + manifest.json
    data = (tmp_path / "src" / "images" / "im3.png").read_bytes()
    (tmp_path / "src" / "images" / "im3.png").write_bytes(data[: len(data) // 2])
    done = run_prepare(tmp_path, tmp_path / "src")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    bad = tmp_path / "src" / "images" / "im3.png"
    assert lines[0] == f"error: {bad}: cannot decode image (image file is truncated)"
    assert snapshot(tmp_path / "out") == before and (tmp_path / "metrics.json").read_bytes() == metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "out", "params.yaml", "src"]  # no temp left


def test_skip_bad_skips_and_counts_the_bad_file(tmp_path):
    done = run_prepare(tmp_path, write_folder(tmp_path / "src", bad="im3"), skip_bad=True)
    assert done.returncode == 0, done.stderr
    assert "WARNING pipeline.data.prepare: skipped" in done.stderr and "im3.png" in done.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["skipped"] == 1 and sum(s["images"] for s in metrics["splits"].values()) == 5
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["skipped"]["errors"] == [f"{tmp_path / 'src' / 'images' / 'im3.png'}: cannot decode image "
                                             "(image file is truncated)"]


def test_a_misspelt_key_fails_the_stage_on_one_line_naming_params_and_key(tmp_path):
    done = run_prepare(tmp_path, write_folder(tmp_path / "src"), skip_bda=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'params.yaml'}: prepare.skip_bda: unknown key; "
                               "did you mean 'skip_bad'? (valid keys: source, root")
    assert not (tmp_path / "out").exists() and not (tmp_path / "metrics.json").exists()


def test_empty_and_all_background_masks_are_kept_and_counted(tmp_path):
    root = write_folder(tmp_path / "src")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(root / "masks" / "im1.png")  # all background
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(root / "masks" / "im4.png")  # all ignore
    tower_only = np.zeros((40, 48), np.uint8)
    tower_only[0, 0] = 2
    Image.fromarray(tower_only).save(root / "masks" / "im5.png")  # background once towers fold
    done = run_prepare(tmp_path, root)
    assert done.returncode == 0, done.stderr
    assert "3 of 6 masks have no line or tower pixel (kept, counted in the manifest)" in done.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["empty_masks"] == 3 and metrics["skipped"] == 0
    assert sum(s["images"] for s in metrics["splits"].values()) == 6  # all kept
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["empty_masks"] == {"count": 3, "names": ["im1", "im4", "im5"]}
    # control: with towers, the tower-only mask is not empty
    assert prepare(folder_cfg(root), BaseCfg(towers=True), tmp_path / "b")["empty_masks"]["count"] == 2


def test_in_process_failure_leaves_the_old_output_and_no_temporary_folder(tmp_path):
    root = write_folder(tmp_path / "src", bad="im3")
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "old.txt").write_text("previous output")
    with pytest.raises(DataError, match=r"im3\.png: cannot decode image"):
        prepare(folder_cfg(root), BaseCfg(), out)
    assert (out / "old.txt").read_text() == "previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "src"]
    manifest = prepare(folder_cfg(root, skip_bad=True), BaseCfg(), out)  # control: skipping succeeds
    assert manifest["skipped"]["count"] == 1 and len(manifest["files"]) == 5 and not (out / "old.txt").exists()


def test_skip_bad_with_every_file_bad_is_an_error_not_an_empty_data_set(tmp_path):
    root = write_folder(tmp_path / "src", n=2)
    for image in (root / "images").iterdir():
        image.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"src: all 2 items were skipped as bad; nothing to prepare"):
        prepare(folder_cfg(root, skip_bad=True), BaseCfg(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
