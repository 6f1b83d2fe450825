"""GeotiffSource: tiling by region, geo metadata, pixel content, nodata, and bad files."""

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
from pipeline.data.sources.base import IGNORE_INDEX
from pipeline.data.sources.geotiff import GeotiffSource
from pipeline.errors import DataError, PipelineError

W, H = 300, 260  # not multiples of region/tile size, so edge handling is exercised
CRS = "EPSG:32633"
TRANSFORM = from_origin(500_000.0, 6_000_000.0, 0.5, 0.5)
CFG = GeotiffCfg(tile_size=64, overlap=16, region_size=128)


def write_raster(path: Path, data: np.ndarray, transform=TRANSFORM, crs=CRS, nodata=None) -> Path:
    """Write a (bands, H, W) array as a GeoTIFF."""
    bands, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=data.dtype,
        crs=crs, transform=transform, nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


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


def test_nodata_value_becomes_ignore_and_black(tmp_path):
    image, mask = make_arrays()
    image[:, 10:40, 20:70] = 0  # nodata block, fully inside tile r0c0_0_0
    mask[0, 10:20, 20:30] = 7  # junk labels under nodata are ignored, not an error
    write_raster(tmp_path / "scene.tif", image, nodata=0)
    write_raster(tmp_path / "mask.tif", mask)
    sample = GeotiffSource(tmp_path, CFG).load("r0c0_0_0")
    hole = np.zeros((64, 64), bool)
    hole[10:40, 20:64] = True
    assert (sample.mask[hole] == IGNORE_INDEX).all()
    assert (sample.image[hole] == 0).all()
    # positive control: outside the hole the tile is untouched
    np.testing.assert_array_equal(sample.mask[~hole], mask[0, :64, :64][~hole])
    np.testing.assert_array_equal(sample.image[~hole], image[:, :64, :64].transpose(1, 2, 0)[~hole])


def test_nan_in_float_scene_becomes_ignore(tmp_path):
    image, mask = make_arrays(dtype=np.float32)
    image[1, 5:9, 5:9] = np.nan  # one band NaN is enough to void the pixel
    write_raster(tmp_path / "scene.tif", image)
    write_raster(tmp_path / "mask.tif", mask)
    sample = GeotiffSource(tmp_path, CFG).load("r0c0_0_0")
    assert (sample.mask[5:9, 5:9] == IGNORE_INDEX).all()
    assert (sample.image[5:9, 5:9] == 0).all()
    assert sample.image[20:, 20:].max() > 0


def test_16bit_four_band_scene_uses_one_scene_wide_stretch(tmp_path):
    image, mask = make_arrays(bands=4, dtype=np.uint16)
    image[3] = 60_000  # the 4th band (e.g. NIR) must not be used
    write_raster(tmp_path / "scene.tif", image)
    write_raster(tmp_path / "mask.tif", mask)
    src = GeotiffSource(tmp_path, CFG)
    keys = src.keys()
    samples = [src.load(k) for k in keys]
    lo, hi = np.percentile(image[:3].reshape(3, -1), [2, 98], axis=1)
    np.testing.assert_allclose(samples[0].meta["stretch"], np.stack([lo, hi], axis=1))
    for s in samples:
        col, row, w, h = s.meta["window"]
        raw = image[:3, row:row + h, col:col + w].astype(float).transpose(1, 2, 0)
        expected = np.clip(np.rint((raw - lo) / (hi - lo) * 255), 0, 255)
        np.testing.assert_array_equal(s.image, expected.astype(np.uint8))
        assert s.meta["stretch"] == samples[0].meta["stretch"]
    assert min(s.image.min() for s in samples) == 0 and max(s.image.max() for s in samples) == 255


@pytest.mark.parametrize(
    ("kwargs", "shape", "what"),
    [
        ({"transform": from_origin(500_010.0, 6_000_000.0, 0.5, 0.5)}, (1, H, W), "transform"),
        ({"crs": "EPSG:32634"}, (1, H, W), "CRS"),
        ({}, (1, H, W - 1), "size"),
        ({}, (2, H, W), "1 band"),
    ],
)
def test_mask_not_on_the_scene_grid_is_a_data_error(tmp_path, kwargs, shape, what):
    image, _ = make_arrays()
    write_raster(tmp_path / "scene.tif", image)
    write_raster(tmp_path / "mask.tif", np.zeros(shape, np.uint8), **kwargs)
    with pytest.raises(DataError, match=what) as err:
        GeotiffSource(tmp_path, CFG)
    assert err.value.path.endswith("mask.tif")


def test_mask_values_outside_the_classes_name_the_mask(scene):
    root, _, mask = scene
    mask[0, 0, 0] = 7
    write_raster(root / "mask.tif", mask)
    with pytest.raises(DataError, match=r"\[7\]") as err:
        GeotiffSource(root, CFG).load("r0c0_0_0")
    assert err.value.path.endswith("mask.tif")


@pytest.mark.parametrize("keep", [100, 0.5])
def test_truncated_scene_is_a_data_error_naming_it(scene, keep):
    root = scene[0]
    data = (root / "scene.tif").read_bytes()
    GeotiffSource(root, CFG).load("r1c1_2_2")  # positive control: intact file reads
    (root / "scene.tif").write_bytes(data[: int(keep if keep > 1 else len(data) * keep)])
    with pytest.raises(DataError) as err:
        src = GeotiffSource(root, CFG)
        keys = src.keys()
        for key in keys:
            src.load(key)
    assert err.value.path.endswith("scene.tif")


def test_missing_or_non_raster_files_are_data_errors(scene):
    root = scene[0]
    (root / "mask.tif").write_text("not a tiff")
    with pytest.raises(DataError, match="cannot read") as err:
        GeotiffSource(root, CFG)
    assert err.value.path.endswith("mask.tif")
    with pytest.raises(DataError, match="cannot read"):
        GeotiffSource(root, CFG.model_copy(update={"image": "absent.tif"}))


def test_too_few_bands_and_too_small_scene(tmp_path):
    write_raster(tmp_path / "scene.tif", np.ones((2, H, W), np.uint8))
    write_raster(tmp_path / "mask.tif", np.zeros((1, H, W), np.uint8))
    with pytest.raises(DataError, match="3 bands"):
        GeotiffSource(tmp_path, CFG)
    write_raster(tmp_path / "scene.tif", np.ones((3, 60, 200), np.uint8))
    write_raster(tmp_path / "mask.tif", np.zeros((1, 60, 200), np.uint8))
    with pytest.raises(DataError, match="no 64px tile"):
        GeotiffSource(tmp_path, CFG)


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
