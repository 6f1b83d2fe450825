"""Bad single files: corrupt or truncated images, label PNGs, .mat and GeoTIFF files, and
the documented handling of greyscale, RGBA, 16-bit, 4-band and nodata/NaN images.

Every refusal is the project's DataError on one line naming the file and the problem
(`refused`), and every case has a positive control: the valid variant of the same file
is accepted by the same reader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import GeotiffCfg
from pipeline.data.sources.base import IGNORE_INDEX
from pipeline.data.sources.files import read_label_png, read_mat_boundaries, read_rgb
from pipeline.data.sources.geotiff import GeotiffSource
from tests.builders import encode, line_mask, mat_bytes, refused, rgb_array, savemat_bytes, write, write_raster

IMAGE = rgb_array(64, 64)
CFG = GeotiffCfg(tile_size=32, overlap=0, region_size=64)


def read_scene(root: Path) -> list:
    """Every tile of the GeoTIFF scene in root (scene.tif + mask.tif)."""
    source = GeotiffSource(root, CFG)
    return list(map(source.load, source.keys()))


def geotiff_pair(root: Path, image: np.ndarray, mask: np.ndarray | None = None, nodata=None) -> Path:
    write_raster(root / "scene.tif", image, nodata=nodata)
    shape = (1, *image.shape[1:])
    write_raster(root / "mask.tif", np.zeros(shape, np.uint8) if mask is None else mask)
    return root / "scene.tif"


# ------------------------------------------------------------ corrupt / truncated files
FILES = {  # kind -> (file name, valid bytes, reader, problem when corrupt)
    "jpeg": ("a.jpg", encode(IMAGE, "JPEG"), read_rgb, "cannot decode image"),
    "png": ("a.png", encode(IMAGE, "PNG"), read_rgb, "cannot decode image"),
    "tiff": ("a.tif", encode(IMAGE, "TIFF"), read_rgb, "cannot decode image"),
    "tiff-lzw": ("a.tif", encode(IMAGE, "TIFF", compression="tiff_lzw"), read_rgb, "cannot decode image"),
    "label-png": ("m.png", encode(line_mask(64, 64), "PNG"), read_label_png, "cannot decode label PNG"),
    "mat": ("m.mat", mat_bytes(line_mask(64, 64)), read_mat_boundaries, "not a readable MAT file"),
}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("kind", list(FILES))
def test_a_corrupt_file_is_one_line_naming_it(tmp_path, kind, damage):
    name, valid, read, problem = FILES[kind]
    assert read(write(tmp_path / "ok" / name, valid)).shape[:2] == (64, 64)  # positive control
    bad = {"truncated": valid[: len(valid) // 2], "garbage": b"\x00not an image" * 40, "empty": b""}[damage]
    refused(lambda: read(write(tmp_path / "bad" / name, bad)), tmp_path / "bad" / name, problem)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_geotiff_is_one_line_naming_it(tmp_path, damage):
    scene = geotiff_pair(tmp_path, np.full((3, 64, 64), 7, np.uint8))
    assert len(read_scene(tmp_path)) == 4  # positive control
    data = scene.read_bytes()
    scene.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"II*\x00" + bytes(300))
    refused(lambda: read_scene(tmp_path), scene, "cannot read raster")


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    refused(lambda: read_rgb(tmp_path / "gone.jpg"), "gone.jpg", "cannot read image")
    refused(lambda: read_mat_boundaries(tmp_path / "gone.mat"), "gone.mat", "not a readable MAT")


# ------------------------------------------------------------ documented image handling
def test_greyscale_is_replicated_to_rgb(tmp_path):
    grey = IMAGE[:, :, 0]
    for mode in ("L", "LA", "1"):
        img = Image.fromarray(grey).convert(mode)
        img.save(tmp_path / f"{mode}.png")
        expected = np.asarray(img.convert("L"))
        assert np.array_equal(read_rgb(tmp_path / f"{mode}.png"), np.repeat(expected[:, :, None], 3, 2)), mode


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_rgba_and_4_band_8_bit_images_drop_the_4th_band(tmp_path, fmt):
    four = np.dstack([IMAGE, np.full(IMAGE.shape[:2], 9, np.uint8)])
    out = read_rgb(write(tmp_path / f"rgba.{fmt.lower()}", encode(four, fmt)))
    assert np.array_equal(out, IMAGE)  # bands 1-3 exactly, the 4th ignored


def test_16_bit_greyscale_is_scaled_by_257(tmp_path):
    sixteen = np.array([[0, 257, 65535, 30000, 128]], np.uint16)
    for fmt in ("PNG", "TIFF"):
        out = read_rgb(write(tmp_path / f"g16.{fmt.lower()}", encode(sixteen, fmt)))
        assert out[0, :, 0].tolist() == [0, 1, 255, round(30000 / 257), 0] and (out[..., 2] == out[..., 0]).all()


def test_16_bit_rgb_png_keeps_the_high_byte(tmp_path):
    import cv2  # Pillow cannot write 16-bit RGB; OpenCV can (BGR order)

    rgb16 = np.array([[[0, 0x1234, 0xFFFF], [0x8000, 0x00FF, 0x0100]]], np.uint16)
    assert cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])
    assert read_rgb(tmp_path / "c16.png").tolist() == [[[0, 0x12, 0xFF], [0x80, 0x00, 0x01]]]


@pytest.mark.parametrize("bands, dtype", [(3, "uint16"), (5, "uint8"), (3, "float32")])
def test_tiffs_pillow_cannot_read_are_refused_pointing_to_the_geotiff_source(tmp_path, bands, dtype):
    data = np.ones((bands, 8, 8), dtype)
    path = write_raster(tmp_path / "scene.tif", data)
    refused(lambda: read_rgb(path), path, "cannot decode image.*geotiff source")
    # positive control: the geotiff source reads the same kind of scene (bands 1-3, stretched)
    scene = np.arange(3 * 64 * 64).reshape(3, 64, 64).astype(dtype)
    geotiff_pair(tmp_path, np.concatenate([scene, scene[:1].repeat(bands - 3, 0)]))
    assert all(t.image.dtype == np.uint8 and t.image.max() > 0 for t in read_scene(tmp_path))


def test_a_float_image_is_refused(tmp_path):
    Image.fromarray(np.ones((8, 8), np.float32)).save(tmp_path / "f.tif")
    refused(lambda: read_rgb(tmp_path / "f.tif"), "f.tif", "unsupported image mode 'F'.*geotiff source")


def test_geotiff_16_bit_4_band_scene_uses_bands_1_to_3_with_one_stretch(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(1, 4000, size=(4, 64, 64)).astype(np.uint16)
    image[3] = 60_000  # the 4th band (e.g. NIR) must not be used
    geotiff_pair(tmp_path, image)
    tiles = read_scene(tmp_path)
    lo, hi = np.percentile(image[:3].reshape(3, -1), [2, 98], axis=1)
    np.testing.assert_allclose(tiles[0].meta["stretch"], np.stack([lo, hi], axis=1))
    for tile in tiles:
        col, row, w, h = tile.meta["window"]
        raw = image[:3, row:row + h, col:col + w].astype(float).transpose(1, 2, 0)
        expected = np.clip(np.rint((raw - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(tile.image, expected)
        assert tile.meta["stretch"] == tiles[0].meta["stretch"]


def test_geotiff_with_fewer_than_3_bands_is_refused(tmp_path):
    scene = geotiff_pair(tmp_path, np.ones((2, 64, 64), np.uint8))
    refused(lambda: read_scene(tmp_path), scene, "need at least 3 bands")


def test_geotiff_nodata_becomes_ignore_and_black(tmp_path):
    image = np.random.default_rng(0).integers(1, 256, (3, 64, 64)).astype(np.uint8)
    mask = np.ones((1, 64, 64), np.uint8)
    image[:, 4:12, 4:20] = 0  # nodata block inside tile r0c0_0_0
    mask[0, 4:8, 4:8] = 7  # junk labels under nodata are ignored, not an error
    geotiff_pair(tmp_path, image, mask, nodata=0)
    tile = GeotiffSource(tmp_path, CFG).load("r0c0_0_0")
    hole = np.zeros((32, 32), bool)
    hole[4:12, 4:20] = True
    assert (tile.mask[hole] == IGNORE_INDEX).all() and (tile.image[hole] == 0).all()
    # positive control: outside the hole the tile is untouched
    assert (tile.mask[~hole] == 1).all()
    np.testing.assert_array_equal(tile.image[~hole], image[:, :32, :32].transpose(1, 2, 0)[~hole])


def test_geotiff_nan_in_any_band_becomes_ignore(tmp_path):
    image = np.random.default_rng(0).uniform(1, 100, (3, 64, 64)).astype(np.float32)
    image[1, 5:9, 5:9] = np.nan  # one band NaN is enough to void the pixel
    geotiff_pair(tmp_path, image, np.ones((1, 64, 64), np.uint8))
    tile = GeotiffSource(tmp_path, CFG).load("r0c0_0_0")
    assert (tile.mask[5:9, 5:9] == IGNORE_INDEX).all() and (tile.image[5:9, 5:9] == 0).all()
    assert (tile.mask[10:, 10:] == 1).all() and tile.image[10:, 10:].max() > 0


def test_an_all_nodata_geotiff_is_refused(tmp_path):
    scene = geotiff_pair(tmp_path, np.full((3, 64, 64), np.nan, np.float32))
    refused(lambda: read_scene(tmp_path), scene, "no valid \\(non-nodata\\) pixel")


# ------------------------------------------------------------ label files
def test_label_png_rules(tmp_path):
    labels = np.array([[0, 1, 2, 255]], np.uint8)
    assert np.array_equal(read_label_png(write(tmp_path / "l.png", encode(labels, "PNG"))), labels)
    ok16 = write(tmp_path / "ok16.png", encode(labels.astype(np.uint16), "PNG"))
    assert np.array_equal(read_label_png(ok16), labels)
    bad16 = write(tmp_path / "bad16.png", encode(np.array([[0, 256]], np.uint16), "PNG"))
    refused(lambda: read_label_png(bad16), bad16, "16-bit label values up to 256 exceed 255")
    jpeg = write(tmp_path / "lossy.jpg", encode(np.zeros((8, 8), np.uint8), "JPEG"))
    refused(lambda: read_label_png(jpeg), jpeg, "label file must be PNG, got JPEG")
    colour = write(tmp_path / "colour.png", encode(rgb_array(), "PNG"))
    refused(lambda: read_label_png(colour), colour, "colour label PNG")


@pytest.mark.parametrize("name, content, problem", [
    ("nokey.mat", savemat_bytes({"other": np.zeros((2, 2))}), "no groundTruth"),
    ("values.mat", mat_bytes(line_mask() * 2), r"values \[2\] are not 0/1"),
    ("flat.mat", mat_bytes(np.zeros((0, 3), np.uint8)), "non-empty 2-D"),
    ("header.mat", b"MATLAB 5.0 MAT-file" + bytes(200), "not a readable MAT"),
])
def test_a_malformed_mat_is_refused(tmp_path, name, content, problem):
    assert np.array_equal(read_mat_boundaries(write(tmp_path / "ok.mat", mat_bytes(line_mask()))), line_mask())
    refused(lambda: read_mat_boundaries(write(tmp_path / name, content)), name, problem)
