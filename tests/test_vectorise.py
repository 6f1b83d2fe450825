"""Vectorisation: the skeleton tracer, and mask GeoTIFF -> GeoJSON LineStrings across tiles."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from pipeline.inference.vectorise import trace, vectorise

TRANSFORM = from_origin(500_000.0, 6_000_000.0, 0.5, 0.5)


def write_mask(path: Path, mask: np.ndarray, crs: str = "EPSG:32633") -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                       dtype="uint8", crs=crs, transform=TRANSFORM, nodata=255) as dst:
        dst.write(mask, 1)
    return path


def test_staircase_is_one_polyline_not_a_chain_of_junctions():
    skel = np.zeros((8, 10), bool)
    for r, c in [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5), (5, 6), (6, 7)]:
        skel[r, c] = True  # 4-connected steps, then diagonal ones
    lines = trace(skel)
    assert len(lines) == 1 and len(lines[0]) == 10
    assert {tuple(lines[0][0]), tuple(lines[0][-1])} == {(1, 1), (6, 7)}


def test_cross_gives_four_arms_and_ring_one_closed_line():
    cross = np.zeros((11, 11), bool)
    cross[5, 1:10] = cross[1:10, 5] = True
    arms = trace(cross)
    assert len(arms) == 4 and all(tuple(arm[0]) == (5, 5) or tuple(arm[-1]) == (5, 5) for arm in arms)
    ring = np.zeros((12, 12), np.uint8)
    cv2.circle(ring, (6, 6), 4, 1, 1)
    loops = trace(ring > 0)
    assert len(loops) == 1 and tuple(loops[0][0]) == tuple(loops[0][-1]) and len(loops[0]) > 20


def test_a_curved_line_across_tiles_comes_back_as_one_linestring(tmp_path):
    mask = np.zeros((300, 420), np.uint8)
    xs = np.arange(15, 405)
    drawn_px = np.column_stack([xs, 150 + 100 * np.sin(xs / 70)]).round().astype(np.int32)
    cv2.polylines(mask, [drawn_px], False, 1, 3)
    cv2.line(mask, (30, 30), (200, 40), 1, 2)  # a second, separate line
    mask[250:, :100] = 255  # nodata is not line
    out = tmp_path / "lines.geojson"
    count = vectorise(write_mask(tmp_path / "mask.tif", mask), out, simplify=0.5, tile=96, margin=32)
    collection = json.loads(out.read_text())
    assert count == 2 == len(collection["features"])
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    lines = sorted((shapely.LineString(f["geometry"]["coordinates"]) for f in collection["features"]),
                   key=lambda line: -line.length)
    drawn = shapely.LineString([TRANSFORM * (x + 0.5, y + 0.5) for x, y in drawn_px])
    assert lines[0].hausdorff_distance(drawn) < 2 * 0.5  # within 2 px of 0.5 m
    assert lines[0].length == pytest.approx(drawn.length, rel=0.03)
    lengths = sorted((f["properties"]["length"] for f in collection["features"]), reverse=True)
    assert lengths == pytest.approx([line.length for line in lines])


def test_short_bits_and_empty_masks_give_no_lines(tmp_path):
    mask = np.zeros((100, 100), np.uint8)
    mask[50, 50:55] = 1  # 5 px: under min_length
    out = tmp_path / "none.geojson"
    assert vectorise(write_mask(tmp_path / "m.tif", mask), out, min_length=10) == 0
    assert json.loads(out.read_text())["features"] == []
