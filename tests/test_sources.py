"""Readers of real data sources: the real sets load as documented, pairs and labels come
out right. Bad input (corrupt files, mismatches, escapes, fuzzing) is tested in
tests/reliability/test_bad_*.py and test_fuzz_readers.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import FolderCfg, TtplaCfg
from pipeline.data.sources.base import IGNORE_INDEX, LINE, TOWER
from pipeline.data.sources.folder import FolderSource
from pipeline.data.sources.pld_uav import PldUavSource
from pipeline.data.sources.ttpla import TtplaSource
from pipeline.errors import DataError
from tests.builders import encode, labelme, line_mask, mat_bytes, rgb_array, shape, write

PROJECT = Path(__file__).parents[1]
SHARED = PROJECT.parent / "shared" / "datasets"
PLDU = SHARED / "pld-uav" / "PLDU"
TTPLA = SHARED / "ttpla-sample"
SPLIT_FILE = PROJECT / "data" / "splits" / "pldu.json"
needs_pldu = pytest.mark.skipif(not PLDU.is_dir(), reason=f"real PLD-UAV data absent ({PLDU})")
needs_ttpla = pytest.mark.skipif(not TTPLA.is_dir(), reason=f"real TTPLA sample absent ({TTPLA})")


# ---------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def pldu_stats() -> dict[str, tuple[tuple[int, int], int]]:
    """id -> ((height, width), line pixels) over all 120 public images."""
    source = PldUavSource(PLDU, SPLIT_FILE)
    stats, keys = {}, source.keys()
    for key in keys:
        sample = source.load(key)
        assert sample.meta["source"] == "pld-uav"
        assert set(np.unique(sample.mask).tolist()) <= {0, LINE}
        stats[key] = (sample.mask.shape, int((sample.mask == LINE).sum()))
    return stats


@needs_pldu
def test_pldu_real_all_load_with_documented_shapes_and_line_fraction(pldu_stats):
    assert len(pldu_stats) == 120
    shapes = [shape for shape, _ in pldu_stats.values()]
    assert shapes.count((540, 360)) == 107 and shapes.count((360, 540)) == 13
    fractions = [n / (h * w) for (h, w), n in pldu_stats.values()]
    assert min(fractions) >= 0.0025 and max(fractions) <= 0.0235  # "0.3-2.3 %", rounded
    overall = sum(n for _, n in pldu_stats.values()) / sum(h * w for h, w in shapes)
    assert overall == pytest.approx(0.013, abs=0.001)


@needs_pldu
def test_pldu_committed_split_covers_every_image_and_spreads_landscape(pldu_stats):
    split = PldUavSource(PLDU, SPLIT_FILE).fixed_split()
    assert set(split) == set(pldu_stats)
    counts = {s: sum(v == s for v in split.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 80, "val": 20, "test": 20}
    landscape = [split[k] for k, (shape, _) in pldu_stats.items() if shape == (360, 540)]
    assert {s: landscape.count(s) for s in ("train", "val", "test")} == {"train": 9, "val": 2,
                                                                         "test": 2}


def test_pldu_split_file_is_keyed_by_image_id():
    doc = json.loads(SPLIT_FILE.read_text())
    ids = doc["train"] + doc["val"] + doc["test"]
    assert "_comment" in doc and len(ids) == len(set(ids)) == 120
    assert all(i.isdigit() for i in ids)


@needs_ttpla
def test_ttpla_real_sample_loads_with_plausible_cable_fraction(tmp_path):
    sample = TtplaSource(TTPLA, TtplaCfg()).load("53_00231")
    assert sample.image.shape == (2160, 3840, 3) and sample.mask.shape == (2160, 3840)
    assert set(np.unique(sample.mask).tolist()) == {0, LINE}
    assert 0.03 < (sample.mask == LINE).mean() < 0.05  # 8 cable polygons, ~4 % by shoelace
    assert sample.meta["unknown_labels"] == {} and sample.meta["skipped_shapes"] == 0
    # positive control of the imageData path: the JSON alone (no image file next to it)
    write(tmp_path / "53_00231.json", (TTPLA / "53_00231.json").read_bytes())
    embedded = TtplaSource(tmp_path, TtplaCfg()).load("53_00231")
    assert embedded.meta["image"] == "imageData"
    assert np.array_equal(embedded.mask, sample.mask)


# ---------------------------------------------------------------- PLD-UAV layout
def pldu_tree(root: Path, ids=("1", "2")) -> Path:
    for i in ids:
        write(root / "test" / f"{i}.jpg", encode(rgb_array(), "JPEG"))
        write(root / "test_gt" / f"{i}.mat", mat_bytes(line_mask()))
    return root


def test_pldu_source_pairs_image_and_mat(tmp_path):
    root = pldu_tree(tmp_path / "PLDU", ids=("1", "2"))
    source = PldUavSource(root, None)
    sample = source.load("1")
    assert sample.mask.sum() == 8 and sample.meta == {"source": "pld-uav",
                                                      "path": str(root / "test" / "1.jpg")}
    assert source.keys() == ["1", "2"] and source.fixed_split() is None and source.group("1") == "1"


def test_pldu_takes_the_committed_split_only_for_its_ids_and_says_which(tmp_path, caplog):
    root = pldu_tree(tmp_path / "PLDU", ids=("1", "2", "3"))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"_comment": "x", "train": ["1"], "val": ["2"], "test": ["3"]}))
    with caplog.at_level(logging.INFO, logger="pipeline.data.sources.pld_uav"):
        assert PldUavSource(root, split).fixed_split() == {"1": "train", "2": "val", "3": "test"}
    assert [r.getMessage() for r in caplog.records] == [f"{root}: the split of {split}"]
    caplog.clear()
    split.write_text(json.dumps({"train": ["1", "9"], "val": ["2"], "test": ["3"]}))  # another folder's ids
    with caplog.at_level(logging.INFO, logger="pipeline.data.sources.pld_uav"):
        assert PldUavSource(root, split).fixed_split() is None
    assert len(caplog.records) == 1 and "its 3 image ids are not those of" in caplog.text
    split.write_text("{not json")  # the committed file broken: loud, not a silent random split
    with pytest.raises(DataError, match=r"split\.json"):
        PldUavSource(root, split).fixed_split()


# ---------------------------------------------------------------- folder layout
def test_folder_source_pairs_and_maps(tmp_path):
    root = tmp_path / "set"
    mask = np.where(line_mask() == 1, 255, 0).astype(np.uint8)
    write(root / "images" / "a.jpg", encode(rgb_array(), "JPEG"))
    write(root / "masks" / "a.png", encode(mask, "PNG"))
    write(root / "images" / "big16.png", encode(np.full((12, 8), 65535, np.uint16), "PNG"))
    write(root / "masks" / "big16.png", encode(np.zeros((12, 8), np.uint8), "PNG"))
    source = FolderSource(root, FolderCfg(mask_values={255: LINE}))
    assert source.keys() == ["a", "big16"]
    assert np.array_equal(source.load("a").mask, line_mask())
    assert (source.load("big16").image == 255).all()  # 16-bit image scaled by /257


# ---------------------------------------------------------------- TTPLA / labelme
def test_ttpla_rasterises_classes_in_order_with_void_last(tmp_path):
    write(tmp_path / "a.png", encode(rgb_array(40, 60), "PNG"))
    shapes = [
        shape("void", [[10, 10], [30, 10], [30, 30], [10, 30]]),  # listed first, wins anyway
        shape(" Cable ", [[-20, 18], [80, 18], [80, 22], [-20, 22]]),  # leaves the image
        shape("TOWER_lattice", [[40, 0], [50, 10]], "rectangle"),
        shape("cable", [[0, 35], [59, 35]], "linestrip"),
        shape("cable", [[1, 1], [2, 2]]),  # 2-point polygon: skipped
        shape("cable", [[5, 5]], "point"),  # ignored
        shape("tree", [[0, 0], [5, 0], [5, 5]]),
    ]
    write(tmp_path / "a.json", json.dumps(labelme(shapes)).encode())
    sample = TtplaSource(tmp_path, TtplaCfg()).load("a")
    mask = sample.mask
    assert mask[20, 20] == IGNORE_INDEX and mask[20, 0] == LINE and mask[20, 59] == LINE
    assert mask[5, 45] == TOWER and mask[35, 30] == LINE and mask[36, 30] == LINE
    assert mask[1, 1] == 0 and mask[5, 5] == 0
    assert sample.meta["unknown_labels"] == {"tree": 1} and sample.meta["skipped_shapes"] == 1
