"""Bad data sets, per source: image/mask size or orientation mismatch, mask values outside
the classes, orphans, labelme files that escape the folder or embed huge images, empty
folders, images smaller than the training crop.

Each refusal is a DataError on one line naming the file and the problem (`refused`);
each case has a positive control that the same source accepts the valid variant.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from pipeline.config import FolderCfg, GeotiffCfg, PrepareCfg, TrainCfg, TtplaCfg
from pipeline.data.datamodule import train_transform
from pipeline.data.sources import create_source
from pipeline.data.sources.base import IGNORE_INDEX, LINE
from pipeline.data.sources.folder import FolderSource
from pipeline.data.sources.geotiff import GeotiffSource
from pipeline.data.sources.pld_uav import PldUavSource
from pipeline.data.sources.ttpla import TtplaSource
from pipeline.errors import PipelineError
from tests.builders import (
    TRANSFORM,
    encode,
    labelme,
    line_mask,
    mat_bytes,
    refused,
    rgb_array,
    shape,
    write,
    write_raster,
)

GEO = GeotiffCfg(tile_size=32, overlap=0, region_size=64)
CABLE = [shape("cable", [[0, 0], [10, 0], [10, 5]])]


def folder_pair(root: Path, name: str, mask: np.ndarray, image: np.ndarray | None = None) -> FolderSource:
    write(root / "images" / f"{name}.png", encode(rgb_array() if image is None else image, "PNG"))
    write(root / "masks" / f"{name}.png", encode(mask, "PNG"))
    return FolderSource(root, FolderCfg(mask_values={255: LINE}))


def pldu_pair(root: Path, name: str, boundaries: np.ndarray) -> PldUavSource:
    write(root / "test" / f"{name}.jpg", encode(rgb_array(), "JPEG"))
    write(root / "test_gt" / f"{name}.mat", mat_bytes(boundaries))
    return PldUavSource(root, None)


# ------------------------------------------------------------ size / orientation
@pytest.mark.parametrize("make", [folder_pair, pldu_pair], ids=["folder", "pld-uav"])
def test_mask_size_or_orientation_mismatch_is_refused(tmp_path, make):
    mask = line_mask()  # 12 high, 8 wide like the image
    suffix = ".png" if make is folder_pair else ".mat"
    assert np.array_equal(make(tmp_path, "ok", mask).load("ok").mask, mask)  # positive control
    source = make(tmp_path, "small", line_mask(6, 8))
    refused(lambda: source.load("small"), f"small{suffix}", r"mask size 8x6 != image size 8x12 \(width x height\)$")
    source = make(tmp_path, "turned", line_mask(8, 12))
    refused(lambda: source.load("turned"), f"turned{suffix}", r"8x12 \(width x height\) \(transposed: .*not rotated\)")


@pytest.mark.parametrize("kwargs, shape_, what", [
    ({"transform": from_origin(500_010.0, 6_000_000.0, 0.5, 0.5)}, (1, 64, 64), "not on the scene's grid: transform"),
    ({"crs": "EPSG:32634"}, (1, 64, 64), "not on the scene's grid: CRS EPSG:32634 != scene CRS EPSG:32633"),
    ({}, (1, 64, 63), "not on the scene's grid: size 63x64 != scene size 64x64"),
    ({}, (1, 63, 64), "size 64x63 != scene size 64x64"),
    ({}, (2, 64, 64), "mask must have 1 band, got 2"),
])
def test_geotiff_mask_off_the_scene_grid_is_refused(tmp_path, kwargs, shape_, what):
    write_raster(tmp_path / "scene.tif", np.ones((3, 64, 64), np.uint8))
    write_raster(tmp_path / "mask.tif", np.zeros((1, 64, 64), np.uint8), transform=TRANSFORM)
    assert len(GeotiffSource(tmp_path, GEO).keys()) == 4  # positive control
    write_raster(tmp_path / "mask.tif", np.zeros(shape_, np.uint8), **kwargs)
    refused(lambda: GeotiffSource(tmp_path, GEO), "mask.tif", what)


def test_labelme_declared_size_must_match_the_image(tmp_path):
    write(tmp_path / "a.png", encode(rgb_array(40, 60), "PNG"))
    write(tmp_path / "ok.json", json.dumps(labelme(CABLE)).encode())
    write(tmp_path / "wrong.json", json.dumps(labelme(CABLE, h=41)).encode())
    source = TtplaSource(tmp_path, TtplaCfg())
    assert source.load("ok").mask.shape == (40, 60)
    refused(lambda: source.load("wrong"), "wrong.json",
            "declares imageWidth x imageHeight 60x41 but the image is 60x40")


# ------------------------------------------------------------ label values, orphans
def test_mask_values_outside_the_classes_are_refused(tmp_path):
    zero_255 = np.where(line_mask() == 1, 255, 0).astype(np.uint8)
    assert np.array_equal(folder_pair(tmp_path, "ok", zero_255).load("ok").mask, line_mask())  # 255 -> line
    source = folder_pair(tmp_path, "odd", np.full((12, 8), 7, np.uint8))
    refused(lambda: source.load("odd"), "odd.png", r"mask values \[7\] outside the classes \[0, 1, 2, 255\]")
    with pytest.raises(PipelineError, match=r"prepare\.folder\.mask_values: 255 -> 7 invalid"):
        FolderSource(tmp_path, FolderCfg(mask_values={255: 7}))  # a config mistake: never skipped


def test_geotiff_mask_values_outside_the_classes_are_refused(tmp_path):
    write_raster(tmp_path / "scene.tif", np.ones((3, 64, 64), np.uint8))
    mask = np.ones((1, 64, 64), np.uint8)
    write_raster(tmp_path / "mask.tif", mask)
    assert (GeotiffSource(tmp_path, GEO).load("r0c0_0_0").mask == 1).all()
    mask[0, 0, 0] = 7
    write_raster(tmp_path / "mask.tif", mask)
    refused(lambda: GeotiffSource(tmp_path, GEO).load("r0c0_0_0"), "mask.tif", r"values \[7\] outside")


def test_orphans_are_refused(tmp_path):
    source = folder_pair(tmp_path, "ok", line_mask())
    write(tmp_path / "images" / "lonely.png", encode(rgb_array(), "PNG"))
    write(tmp_path / "masks" / "orphan.png", encode(line_mask(), "PNG"))
    assert source.keys() == ["lonely", "ok", "orphan"] and source.load("ok").mask.sum() == 8
    refused(lambda: source.load("lonely"), "lonely.png", "image has no mask lonely.png in")
    refused(lambda: source.load("orphan"), "orphan.png", "mask has no image named orphan.* in")
    pldu = pldu_pair(tmp_path / "pldu", "1", line_mask())
    assert pldu.load("1").mask.sum() == 8
    (tmp_path / "pldu" / "test_gt" / "1.mat").unlink()
    refused(lambda: pldu.load("1"), "1.jpg", r"no ground truth: .*1\.mat is missing")


# ------------------------------------------------------------ labelme: escapes, huge imageData
def test_labelme_image_path_outside_the_folder_is_refused(tmp_path):
    root = tmp_path / "root"
    write(root / "a.png", encode(rgb_array(40, 60), "PNG"))
    write(tmp_path / "outside.png", encode(rgb_array(40, 60), "PNG"))
    write(root / "ok.json", json.dumps(labelme(CABLE)).encode())
    write(root / "escape.json", json.dumps(labelme(CABLE, image_path="../outside.png")).encode())
    write(root / "abs.json", json.dumps(labelme(CABLE, image_path=str(tmp_path / "outside.png"))).encode())
    source = TtplaSource(root, TtplaCfg())
    assert source.load("ok").meta["image"] == str((root / "a.png").resolve())
    refused(lambda: source.load("escape"), "escape.json", r"imagePath '\.\./outside\.png' resolves outside .*; refused")
    refused(lambda: source.load("abs"), "abs.json", "resolves outside")


def test_labelme_huge_image_data_is_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    inline = base64.b64encode(encode(noise, "PNG")).decode()  # ~7 KiB
    write(tmp_path / "embedded.json", json.dumps(labelme(CABLE, image_path="gone.png", image_data=inline)).encode())
    assert TtplaSource(tmp_path, TtplaCfg()).load("embedded").meta["image"] == "imageData"  # within 64 MiB
    tiny = TtplaSource(tmp_path, TtplaCfg(max_image_data_mb=0.001))
    refused(lambda: tiny.load("embedded"), "embedded.json",
            r"imageData of 0\.00\d+ MiB exceeds max_image_data_mb=0\.001; refused")
    # a JSON file too big to be a labelme file is refused before it is parsed
    write(tmp_path / "huge.json", b" " * (17 * 2**20))
    refused(lambda: tiny.load("huge"), "huge.json", "JSON larger than 16 MiB; refused")


@pytest.mark.parametrize("doc, problem", [
    (b'{"shapes": [', "malformed labelme JSON"),
    (json.dumps(labelme(CABLE, image_path="gone.png")).encode(), "image 'gone.png' not found and no imageData"),
    (json.dumps(labelme([shape("cable", [[0, "x"], [1, 1], [2, 2]])])).encode(),
     r"shapes\[0\]\.points has a bad point"),
    (json.dumps(labelme(CABLE, image_path="", image_data="***")).encode(), "imageData is not base64"),
])
def test_malformed_labelme_is_refused(tmp_path, doc, problem):
    write(tmp_path / "a.png", encode(rgb_array(40, 60), "PNG"))
    write(tmp_path / "ok.json", json.dumps(labelme(CABLE)).encode())
    assert TtplaSource(tmp_path, TtplaCfg()).load("ok").mask.sum() > 0
    write(tmp_path / "bad.json", doc)
    refused(lambda: TtplaSource(tmp_path, TtplaCfg()).load("bad"), "bad.json", problem)


# ------------------------------------------------------------ empty folders
EMPTY = {  # source -> (a valid item to add for the positive control, what the error says)
    "folder": (lambda root: folder_pair(root, "a", line_mask()), "images: folder does not exist"),
    "pld-uav": (lambda root: pldu_pair(root, "1", line_mask()), "no test/ or train/ folder"),
    "ttpla": (lambda root: write(root / "a.json", json.dumps(labelme(CABLE, "", base64.b64encode(
        encode(rgb_array(40, 60), "PNG")).decode())).encode()), "no labelme \\*.json files"),
    "geotiff": (lambda root: [write_raster(root / n, np.ones((b, 64, 64), np.uint8)) for n, b in
                              (("scene.tif", 3), ("mask.tif", 1))], r"scene\.tif: cannot read raster"),
}


@pytest.mark.parametrize("source", list(EMPTY))
def test_an_empty_data_folder_is_one_line(tmp_path, source):
    add_item, problem = EMPTY[source]
    cfg = PrepareCfg(source=source, root=str(tmp_path), geotiff=GEO)
    refused(lambda: create_source(cfg, 0).keys(), tmp_path.name, problem)
    add_item(tmp_path)
    assert len(create_source(cfg, 0).keys()) >= 1  # positive control
    gone = PrepareCfg(source=source, root=str(tmp_path / "absent"))
    refused(lambda: create_source(gone, 0), "absent", "prepare.root does not exist", PipelineError)


# ------------------------------------------------------------ images smaller than the crop
def test_an_image_smaller_than_the_crop_is_padded_with_ignore():
    crop = train_transform(TrainCfg(crop_size=64, line_crop_fraction=0.5))
    image, mask = rgb_array(20, 30), line_mask(20, 30)
    crop.set_random_seed(0)
    out = crop(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
    labels = out["mask"]
    assert (labels == IGNORE_INDEX).sum() == 64 * 64 - 20 * 30 and (labels == LINE).sum() == 30
    big = crop(image=rgb_array(100, 100), mask=line_mask(100, 100))  # positive control: no padding
    assert big["mask"].shape == (64, 64) and not (big["mask"] == IGNORE_INDEX).any()


def test_a_geotiff_scene_smaller_than_a_tile_is_refused(tmp_path):
    write_raster(tmp_path / "scene.tif", np.ones((3, 20, 200), np.uint8))
    write_raster(tmp_path / "mask.tif", np.zeros((1, 20, 200), np.uint8))
    refused(lambda: GeotiffSource(tmp_path, GEO), "scene.tif", r"scene 200x20 yields no 32px tile")
    write_raster(tmp_path / "scene.tif", np.ones((3, 40, 200), np.uint8))  # positive control: 32 px high
    write_raster(tmp_path / "mask.tif", np.zeros((1, 40, 200), np.uint8))
    assert len(GeotiffSource(tmp_path, GEO).keys()) == 3 * 2 * 2  # 3 full 64 px wide regions, 2x2 tiles each


def test_empty_image_and_mask_folders_are_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    refused(lambda: FolderSource(tmp_path, FolderCfg()).keys(), "images", r"no images \(\.jpg, .*\) and no masks in")
    folder_pair(tmp_path, "a", line_mask())
    assert FolderSource(tmp_path, FolderCfg()).keys() == ["a"]
