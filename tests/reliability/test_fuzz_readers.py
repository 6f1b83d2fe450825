"""Property-based: every reader fed random bytes, or a valid file truncated and with bytes
flipped, either returns a well-formed result or raises the project's own error on one line
naming the file. Any other exception (a library's, from deep inside) fails the test."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import FolderCfg, GeotiffCfg, TtplaCfg
from pipeline.data.sources.base import ALLOWED_LABELS
from pipeline.data.sources.files import decode_rgb, read_label_png, read_mat_boundaries, read_rgb
from pipeline.data.sources.folder import FolderSource
from pipeline.data.sources.geotiff import GeotiffSource
from pipeline.data.sources.ttpla import TtplaSource
from pipeline.errors import DataError, PipelineError
from pipeline.params import SECTIONS, load_sections
from tests.builders import encode, labelme, line_mask, mat_bytes, rgb_array, shape, write, write_raster
from tests.conftest import ROOT

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
IMAGE = rgb_array(16, 16)


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, or the valid bytes truncated, with some bytes flipped, or both."""
    n = len(valid)
    flips = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), max_size=8)

    def apply(cut: int, changes: list[tuple[int, int]]) -> bytes:
        data = bytearray(valid)
        for index, xor in changes:
            data[index] ^= xor
        return bytes(data[:cut])

    return st.binary(max_size=300) | st.builds(apply, st.integers(0, n), flips)


def only_own_errors(read, path: Path, data: bytes, error: type[Exception] = DataError, name: str | None = None):
    """read(path) after writing data there: its result, or None for `error` naming the file on one line."""
    write(path, data)
    try:
        return read(path)
    except error as err:
        assert (name or path.name) in str(err) and "\n" not in str(err), str(err)
        return None


def is_rgb(out) -> bool:
    return out is None or (out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3)


VALID_IMAGES = {
    "jpeg": encode(IMAGE, "JPEG"), "png": encode(IMAGE, "PNG"), "bmp": encode(IMAGE, "BMP"),
    "tiff": encode(IMAGE, "TIFF"), "tiff-lzw": encode(IMAGE, "TIFF", compression="tiff_lzw"),
}


@pytest.mark.parametrize("kind", list(VALID_IMAGES))
def test_fuzz_image_reader(tmp_path, kind):
    @FUZZ
    @given(data=mutated(VALID_IMAGES[kind]))
    def check(data):
        assert is_rgb(only_own_errors(read_rgb, tmp_path / f"f.{kind[:4]}", data))
        try:
            assert is_rgb(decode_rgb(data, "embedded.bin"))
        except DataError as err:
            assert str(err).startswith("embedded.bin: ") and "\n" not in str(err)

    check()


@FUZZ
@given(data=mutated(encode(np.array([[0, 1], [2, 255]], np.uint8).repeat(8, 0), "PNG")))
def test_fuzz_label_png_reader(tmp_path, data):
    out = only_own_errors(read_label_png, tmp_path / "l.png", data)
    assert out is None or (out.dtype == np.uint8 and out.ndim == 2)


@FUZZ
@given(data=mutated(mat_bytes(line_mask())))
def test_fuzz_mat_reader(tmp_path, data):
    out = only_own_errors(read_mat_boundaries, tmp_path / "f.mat", data)
    assert out is None or (out.dtype == np.uint8 and out.ndim == 2 and out.max() <= 1)


@FUZZ
@given(data=mutated(json.dumps(labelme(
    [shape("cable", [[0, 0], [10, 0], [10, 5]]), shape("void", [[1, 1], [4, 4]], "rectangle")],
    image_path="", image_data=base64.b64encode(encode(IMAGE, "PNG")).decode(), h=16, w=16,
)).encode()))
def test_fuzz_labelme_reader(tmp_path, data):
    root = tmp_path / "fuzz"
    out = only_own_errors(lambda p: TtplaSource(root, TtplaCfg()).load(p.stem), root / "f.json", data)
    assert out is None or out.mask.shape == out.image.shape[:2]


SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8)
JSONS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
POINTS = st.lists(st.lists(st.floats(-50, 80), min_size=2, max_size=2) | JSONS, max_size=6)
SHAPES = st.fixed_dictionaries({
    "label": st.sampled_from(["cable", " VOID", "tower_wooden", "tree"]) | JSONS,
    "points": POINTS | JSONS,
    "shape_type": st.sampled_from(["polygon", "rectangle", "linestrip", "point", "circle"]) | JSONS,
})
LABELME_DOCS = st.fixed_dictionaries({
    "shapes": st.lists(SHAPES | JSONS, max_size=4) | JSONS,
    "imagePath": st.sampled_from(["a.png", "../a.png", "gone.png", "a\x00", "/etc/passwd"]) | JSONS,
    "imageData": st.just(base64.b64encode(encode(IMAGE, "PNG")).decode()) | JSONS,
    "imageHeight": st.just(16) | JSONS,
    "imageWidth": st.just(16) | JSONS,
})


@FUZZ
@given(doc=LABELME_DOCS)
def test_fuzz_labelme_structure(tmp_path, doc):
    """Type-confused labelme fields (wrong types, odd points, escapes) never crash."""
    root = tmp_path / "structured"
    write(root / "a.png", encode(IMAGE, "PNG"))
    out = only_own_errors(lambda p: TtplaSource(root, TtplaCfg()).load(p.stem), root / "f.json",
                          json.dumps(doc).encode())
    assert out is None or set(np.unique(out.mask).tolist()) <= ALLOWED_LABELS


GEO = GeotiffCfg(tile_size=32, overlap=0, region_size=32)


def geotiff_bytes(tmp: Path, data: np.ndarray) -> bytes:
    return write_raster(tmp, data).read_bytes()


@pytest.mark.parametrize("which", ["scene.tif", "mask.tif"])
def test_fuzz_geotiff_source(tmp_path, which):
    valid = {"scene.tif": geotiff_bytes(tmp_path / "s.tif", np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64)),
             "mask.tif": geotiff_bytes(tmp_path / "m.tif", np.ones((1, 64, 64), np.uint8))}
    root = tmp_path / "scene"

    def read(path: Path) -> list:
        source = GeotiffSource(root, GEO)
        return list(map(source.load, source.keys()))

    @FUZZ
    @given(data=mutated(valid[which]))
    def check(data):
        for name, content in valid.items():
            write(root / name, content)
        tiles = only_own_errors(read, root / which, data, name=".tif")
        assert tiles is None or all(t.image.shape == (32, 32, 3) and t.mask.shape == (32, 32) for t in tiles)

    check()


@pytest.mark.parametrize("which", ["images", "masks"])
def test_fuzz_folder_source(tmp_path, which):
    mask = np.where(line_mask(16, 16), 255, 0).astype(np.uint8)
    valid = {"images": encode(IMAGE, "PNG"), "masks": encode(mask, "PNG")}
    source = FolderSource(tmp_path, FolderCfg(mask_values={255: 1}))

    @FUZZ
    @given(data=mutated(valid[which]))
    def check(data):
        for folder, content in valid.items():
            write(tmp_path / folder / "a.png", content)
        out = only_own_errors(lambda p: source.load("a"), tmp_path / which / "a.png", data)
        assert out is None or (out.image.shape == (16, 16, 3) and out.mask.shape == (16, 16))

    check()


@FUZZ
@given(data=mutated((ROOT / "params.yaml").read_bytes()))
def test_fuzz_params_loader(tmp_path, data):
    """Any bytes as params.yaml: valid sections or a one-line PipelineError naming the file."""
    out = only_own_errors(lambda p: load_sections(p, *SECTIONS), tmp_path / "params.yaml", data, PipelineError)
    assert out is None or len(out) == len(SECTIONS)
