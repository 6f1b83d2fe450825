"""GeotiffSource: tiling by region, geo metadata, pixel content, the stretch of a big scene.
Nodata/NaN, 16-bit/4-band handling and bad files: tests/reliability/test_bad_*.py."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.config import GeotiffCfg
from pipeline.data.sources.geotiff import GeotiffSource
from pipeline.errors import PipelineError
from tests.builders import write_raster

W, H = 300, 260  # not multiples of region/tile size, so edge handling is exercised
CRS = "EPSG:32633"
TRANSFORM = from_origin(500_000.0, 6_000_000.0, 0.5, 0.5)
CFG = GeotiffCfg(tile_size=64, overlap=16, region_size=128)


def make_arrays(seed: int = 0, bands: int = 3, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hi = 256 if dtype == np.uint8 else 4000
    image = rng.integers(1, hi, size=(bands, H, W)).astype(dtype)  # 1..: 0 stays free for nodata
    mask = rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), size=(1, H, W))
    return image, mask


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    image, mask = make_arrays()
    write_raster(tmp_path / "scene.tif", image)
    write_raster(tmp_path / "mask.tif", mask)
    return tmp_path, image, mask


def test_keys_sorted_formatted_and_fixed_split_none(scene):
    src = GeotiffSource(scene[0], CFG)
    keys = src.keys()
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # 2x2 full regions (the 44 px / 4 px edge strips are narrower than a tile), 3x3 tiles each
    assert len(keys) == 36
    assert all(re.fullmatch(r"r\d+c\d+_\d+_\d+", k) for k in keys)
    assert all(k.startswith(src.group(k) + "_") for k in keys)
    assert src.fixed_split() is None


def test_meta_transform_maps_tile_origin_to_scene_coordinates(scene):
    src = GeotiffSource(scene[0], CFG)
    keys = src.keys()
    for key in keys:
        meta = src.load(key).meta
        col, row, width, height = meta["window"]
        assert (width, height) == (64, 64)
        assert len(meta["transform"]) == 6 and all(isinstance(v, float) for v in meta["transform"])
        tile_tf = rasterio.Affine(*meta["transform"])
        assert tile_tf @ (0, 0) == pytest.approx(TRANSFORM @ (col, row))
        assert tile_tf @ (64, 64) == pytest.approx(TRANSFORM @ (col + 64, row + 64))
        assert meta["crs"] == CRS
        assert meta["region"] == src.group(key)
        json.dumps(meta)  # meta must survive being written next to the prepared data


def test_tiles_of_a_group_lie_in_one_region_and_groups_never_overlap(scene):
    src = GeotiffSource(scene[0], CFG)
    keys = src.keys()
    windows = {k: src.load(k).meta["window"] for k in keys}
    for group, members in itertools.groupby(keys, key=src.group):
        cells = set()
        for key in members:
            col, row, w, h = windows[key]
            assert col + w <= W and row + h <= H
            cells.add((col // 128, row // 128, (col + w - 1) // 128, (row + h - 1) // 128))
        assert len(cells) == 1, group
        c0, r0, c1, r1 = cells.pop()
        assert (c0, r0) == (c1, r1), f"{group} crosses a region border"
    for a, b in itertools.combinations(keys, 2):
        if src.group(a) != src.group(b):
            ca, ra, wa, ha = windows[a]
            cb, rb, wb, hb = windows[b]
            overlap = ca < cb + wb and cb < ca + wa and ra < rb + hb and rb < ra + ha
            assert not overlap, (a, b)


def test_edge_tiles_are_shifted_back_inside_the_region(scene):
    src = GeotiffSource(scene[0], CFG)
    keys = src.keys()
    offsets = {tuple(src.load(k).meta["window"][:2]) for k in keys if src.group(k) == "r0c0"}
    assert offsets == {(c, r) for c in (0, 48, 64) for r in (0, 48, 64)}


def test_tile_pixels_equal_the_written_arrays(scene):
    root, image, mask = scene
    src = GeotiffSource(root, CFG)
    keys = src.keys()
    for key in keys:
        sample = src.load(key)
        col, row, w, h = sample.meta["window"]
        assert sample.image.dtype == np.uint8 and sample.image.shape == (h, w, 3)
        np.testing.assert_array_equal(sample.image, image[:, row:row + h, col:col + w].transpose(1, 2, 0))
        np.testing.assert_array_equal(sample.mask, mask[0, row:row + h, col:col + w])


def test_inconsistent_tiling_config_is_rejected(scene):
    with pytest.raises(PipelineError, match="overlap"):
        GeotiffSource(scene[0], GeotiffCfg(tile_size=64, overlap=64, region_size=128))
    with pytest.raises(PipelineError, match="region_size"):
        GeotiffSource(scene[0], GeotiffCfg(tile_size=256, overlap=0, region_size=128))


def test_stretch_of_a_big_scene_comes_from_a_decimated_read(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.data.sources.geotiff._STRETCH_SAMPLE", 100)  # 300 px -> 1/3
    image, mask = make_arrays(dtype=np.uint16)
    write_raster(tmp_path / "scene.tif", image)
    write_raster(tmp_path / "mask.tif", mask)
    stretch = np.array(GeotiffSource(tmp_path, CFG).load("r0c0_0_0").meta["stretch"])
    exact = np.percentile(image.reshape(3, -1), [2, 98], axis=1).T
    np.testing.assert_allclose(stretch, exact, atol=40)  # 1% of the value range
    assert not np.allclose(stretch, exact, rtol=1e-9)  # it really was a sample
