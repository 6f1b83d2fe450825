"""Readers of real data sources: the real sets load as documented, bad files fail cleanly.

Every bad input comes with a positive control (the valid file is accepted), and every
DataError is checked to name the offending file.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.config import FolderCfg, TtplaCfg
from pipeline.data.sources.base import IGNORE_INDEX, LINE, TOWER
from pipeline.data.sources.files import read_label_png, read_mat_boundaries, read_rgb
from pipeline.data.sources.folder import FolderSource
from pipeline.data.sources.pld_uav import PldUavSource
from pipeline.data.sources.ttpla import TtplaSource
from pipeline.errors import DataError, PipelineError

PROJECT = Path(__file__).parents[1]
SHARED = PROJECT.parent / "shared" / "datasets"
PLDU = SHARED / "pld-uav" / "PLDU"
TTPLA = SHARED / "ttpla-sample"
SPLIT_FILE = PROJECT / "data" / "splits" / "pldu.json"
needs_pldu = pytest.mark.skipif(not PLDU.is_dir(), reason=f"real PLD-UAV data absent ({PLDU})")
needs_ttpla = pytest.mark.skipif(not TTPLA.is_dir(), reason=f"real TTPLA sample absent ({TTPLA})")


def named(path: Path) -> str:
    """pytest.raises(match=...) pattern: the message names this file."""
    return re.escape(path.name)


# ---------------------------------------------------------------- file builders
def rgb_array(h: int = 12, w: int = 8) -> np.ndarray:
    return (np.arange(h * w * 3).reshape(h, w, 3) * 7 % 256).astype(np.uint8)


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mat_bytes(boundaries: np.ndarray) -> bytes:
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Boundaries": boundaries}
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"groundTruth": cell})
    return buf.getvalue()


def line_mask(h: int = 12, w: int = 8) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2] = 1
    return mask


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


# ---------------------------------------------------------------- file readers
@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_image_is_refused(tmp_path, fmt, suffix):
    data = encode(rgb_array(64, 64), fmt)
    good = write(tmp_path / f"good{suffix}", data)
    assert read_rgb(good).shape == (64, 64, 3)
    bad = write(tmp_path / f"cut{suffix}", data[: len(data) // 2])
    with pytest.raises(DataError, match=named(bad)):
        read_rgb(bad)


def test_image_modes_are_converted_as_documented(tmp_path):
    rgb = rgb_array()
    gray = rgb[:, :, 0]
    out = read_rgb(write(tmp_path / "gray.png", encode(gray, "PNG")))
    assert out.dtype == np.uint8 and np.array_equal(out, np.repeat(gray[:, :, None], 3, 2))
    rgba = np.dstack([rgb, np.full(gray.shape, 9, np.uint8)])
    assert np.array_equal(read_rgb(write(tmp_path / "rgba.png", encode(rgba, "PNG"))), rgb)
    la = Image.fromarray(gray).convert("LA")
    la.save(tmp_path / "la.png")
    assert np.array_equal(read_rgb(tmp_path / "la.png")[:, :, 2], gray)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert read_rgb(tmp_path / "pal.png").shape == rgb.shape
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_rgb(tmp_path / "cmyk.jpg").shape == rgb.shape
    sixteen = np.array([[0, 257, 65535, 30000]], np.uint16)
    out = read_rgb(write(tmp_path / "g16.png", encode(sixteen, "PNG")))
    assert out[0, :, 0].tolist() == [0, 1, 255, round(30000 / 257)]


def test_label_png_rules(tmp_path):
    labels = np.array([[0, 1, 2, 255]], np.uint8)
    assert np.array_equal(read_label_png(write(tmp_path / "l.png", encode(labels, "PNG"))), labels)
    ok16 = write(tmp_path / "ok16.png", encode(labels.astype(np.uint16), "PNG"))
    assert np.array_equal(read_label_png(ok16), labels)
    bad16 = write(tmp_path / "bad16.png", encode(np.array([[0, 256]], np.uint16), "PNG"))
    with pytest.raises(DataError, match=named(bad16)):
        read_label_png(bad16)
    jpeg = write(tmp_path / "lossy.jpg", encode(np.zeros((8, 8), np.uint8), "JPEG"))
    with pytest.raises(DataError, match=named(jpeg) + ".*must be PNG"):
        read_label_png(jpeg)
    colour = write(tmp_path / "colour.png", encode(rgb_array(), "PNG"))
    with pytest.raises(DataError, match=named(colour)):
        read_label_png(colour)


def test_mat_reader_refuses_corrupt_and_malformed_files(tmp_path):
    good = write(tmp_path / "good.mat", mat_bytes(line_mask()))
    assert np.array_equal(read_mat_boundaries(good), line_mask())
    for name, data in [
        ("garbage.mat", b"not a mat file at all" * 20),
        ("cut.mat", good.read_bytes()[:150]),
        ("nokey.mat", _savemat({"other": np.zeros((2, 2))})),
        ("values.mat", mat_bytes(line_mask() * 2)),
        ("flat.mat", mat_bytes(np.zeros((0, 3), np.uint8))),
    ]:
        with pytest.raises(DataError, match=re.escape(name)):
            read_mat_boundaries(write(tmp_path / name, data))


def _savemat(content: dict) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, content)
    return buf.getvalue()


# ---------------------------------------------------------------- PLD-UAV layout
def pldu_tree(root: Path, ids=("1", "2")) -> Path:
    for i in ids:
        write(root / "test" / f"{i}.jpg", encode(rgb_array(), "JPEG"))
        write(root / "test_gt" / f"{i}.mat", mat_bytes(line_mask()))
    return root


def test_pldu_source_pairs_and_mismatches(tmp_path):
    root = pldu_tree(tmp_path / "PLDU", ids=("1", "2", "3", "4", "5"))
    source = PldUavSource(root, None)
    sample = source.load("1")
    assert sample.mask.sum() == 8 and sample.meta == {"source": "pld-uav",
                                                      "path": str(root / "test" / "1.jpg")}
    assert source.fixed_split() is None and source.group("1") == "1"
    write(root / "test_gt" / "2.mat", mat_bytes(line_mask(12, 9)))
    with pytest.raises(DataError, match=r"2\.mat.*!= image size"):
        source.load("2")
    write(root / "test_gt" / "3.mat", mat_bytes(line_mask(8, 12)))
    with pytest.raises(DataError, match=r"3\.mat.*transposed"):
        source.load("3")
    (root / "test_gt" / "4.mat").unlink()
    with pytest.raises(DataError, match=r"4\.jpg.*no ground truth"):
        source.load("4")
    write(root / "test_gt" / "5.mat", b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(DataError, match=r"5\.mat"):
        source.load("5")


def test_pldu_split_file_must_match_the_images_on_disk(tmp_path):
    root = pldu_tree(tmp_path / "PLDU", ids=("1", "2", "3"))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"_comment": "x", "train": ["1"], "val": ["2"], "test": ["3"]}))
    assert PldUavSource(root, split).fixed_split() == {"1": "train", "2": "val", "3": "test"}
    split.write_text(json.dumps({"train": ["1", "9"], "val": ["2"], "test": ["3"]}))
    with pytest.raises(DataError, match=r"split\.json.*1 ids not found"):
        PldUavSource(root, split).fixed_split()
    split.write_text(json.dumps({"train": ["1"], "val": [], "test": []}))
    with pytest.raises(DataError, match=r"split\.json.*2 images .* in no split"):
        PldUavSource(root, split).fixed_split()
    split.write_text("{not json")
    with pytest.raises(DataError, match=r"split\.json"):
        PldUavSource(root, split).fixed_split()


# ---------------------------------------------------------------- folder layout
def test_folder_source_pairs_maps_and_refuses(tmp_path):
    root = tmp_path / "set"
    mask = np.where(line_mask() == 1, 255, 0).astype(np.uint8)
    write(root / "images" / "a.jpg", encode(rgb_array(), "JPEG"))
    write(root / "masks" / "a.png", encode(mask, "PNG"))
    write(root / "images" / "big16.png", encode(np.full((12, 8), 65535, np.uint16), "PNG"))
    write(root / "masks" / "big16.png", encode(np.zeros((12, 8), np.uint8), "PNG"))
    write(root / "images" / "lonely.png", encode(rgb_array(), "PNG"))
    write(root / "masks" / "orphan.png", encode(mask, "PNG"))
    write(root / "images" / "odd.png", encode(rgb_array(), "PNG"))
    write(root / "masks" / "odd.png", encode(np.full((12, 8), 7, np.uint8), "PNG"))
    write(root / "images" / "small.png", encode(rgb_array(), "PNG"))
    write(root / "masks" / "small.png", encode(np.zeros((6, 8), np.uint8), "PNG"))
    source = FolderSource(root, FolderCfg(mask_values={255: LINE}))
    assert source.keys() == ["a", "big16", "lonely", "odd", "orphan", "small"]
    assert np.array_equal(source.load("a").mask, line_mask())
    assert (source.load("big16").image == 255).all()  # 16-bit image scaled by /257
    with pytest.raises(DataError, match=r"lonely\.png.*no mask"):
        source.load("lonely")
    with pytest.raises(DataError, match=r"orphan\.png.*no image"):
        source.load("orphan")
    with pytest.raises(DataError, match=r"odd\.png.*outside the classes"):
        source.load("odd")
    with pytest.raises(DataError, match=r"small\.png.*!= image size"):
        source.load("small")
    with pytest.raises(PipelineError, match="mask_values"):
        FolderSource(root, FolderCfg(mask_values={255: 7}))


def test_folder_source_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"images.*no images"):
        FolderSource(tmp_path, FolderCfg()).keys()


# ---------------------------------------------------------------- TTPLA / labelme
def labelme(shapes, image_path="a.png", image_data=None, h=40, w=60) -> dict:
    return {"version": "4.5.6", "shapes": shapes, "imagePath": image_path,
            "imageData": image_data, "imageHeight": h, "imageWidth": w}


def shape(label, points, kind="polygon"):
    return {"label": label, "points": points, "shape_type": kind}


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


def test_ttpla_refuses_bad_json_paths_sizes_and_data(tmp_path):
    root = tmp_path / "root"
    write(root / "a.png", encode(rgb_array(40, 60), "PNG"))
    write(tmp_path / "outside.png", encode(rgb_array(40, 60), "PNG"))
    cable = [shape("cable", [[0, 0], [10, 0], [10, 5]])]
    noise = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    inline = base64.b64encode(encode(noise, "PNG")).decode()  # ~7 KiB, over the tiny limit
    cases = {
        "ok": labelme(cable),
        "embedded": labelme(cable, image_path="gone.png", image_data=inline),
        "escape": labelme(cable, image_path="../outside.png"),
        "wrongsize": labelme(cable, h=41),
        "noimage": labelme(cable, image_path="gone.png"),
        "badpoints": labelme([shape("cable", [[0, "x"], [1, 1], [2, 2]])]),
    }
    for name, doc in cases.items():
        write(root / f"{name}.json", json.dumps(doc).encode())
    write(root / "broken.json", b'{"shapes": [')
    source = TtplaSource(root, TtplaCfg())
    assert source.load("ok").mask.sum() > 0 and source.load("embedded").meta["image"] == "imageData"
    for name, problem in [("escape", "outside"), ("wrongsize", "declares"), ("noimage", "not found"),
                          ("badpoints", "bad point"), ("broken", "malformed")]:
        with pytest.raises(DataError, match=rf"{name}\.json.*{problem}"):
            source.load(name)
    tiny = TtplaSource(root, TtplaCfg(max_image_data_mb=0.001))
    with pytest.raises(DataError, match=r"embedded\.json.*max_image_data_mb"):
        tiny.load("embedded")
    with pytest.raises(DataError, match=r"empty.*no labelme"):
        TtplaSource(write(tmp_path / "empty" / "x.txt", b"").parent, TtplaCfg()).keys()


# ---------------------------------------------------------------- fuzzing
def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """The valid bytes truncated, with some bytes flipped, or both."""
    n = len(valid)
    flips = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), max_size=8)

    def apply(cut: int, changes: list[tuple[int, int]]) -> bytes:
        data = bytearray(valid)
        for index, xor in changes:
            data[index] ^= xor
        return bytes(data[:cut])

    return st.builds(apply, st.integers(0, n), flips)


FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
IMAGE = rgb_array(16, 16)


def only_data_errors(read, path: Path, data: bytes):
    path.write_bytes(data)
    try:
        return read(path)
    except DataError as err:
        assert path.name in str(err) and "\n" not in str(err)
        return None


@FUZZ
@given(data=mutated(encode(IMAGE, "PNG")))
def test_fuzz_png_readers(tmp_path, data):
    out = only_data_errors(read_rgb, tmp_path / "f.png", data)
    assert out is None or (out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3)
    out = only_data_errors(read_label_png, tmp_path / "l.png", data)
    assert out is None or (out.dtype == np.uint8 and out.ndim == 2)


@FUZZ
@given(data=mutated(encode(IMAGE, "JPEG")))
def test_fuzz_jpeg_reader(tmp_path, data):
    out = only_data_errors(read_rgb, tmp_path / "f.jpg", data)
    assert out is None or (out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3)


@FUZZ
@given(data=mutated(mat_bytes(line_mask())))
def test_fuzz_mat_reader(tmp_path, data):
    out = only_data_errors(read_mat_boundaries, tmp_path / "f.mat", data)
    assert out is None or (out.dtype == np.uint8 and out.ndim == 2 and out.max() <= 1)


@FUZZ
@given(data=mutated(json.dumps(labelme(
    [shape("cable", [[0, 0], [10, 0], [10, 5]]), shape("void", [[1, 1], [4, 4]], "rectangle")],
    image_path="", image_data=base64.b64encode(encode(IMAGE, "PNG")).decode(), h=16, w=16,
)).encode()))
def test_fuzz_labelme_reader(tmp_path, data):
    root = tmp_path / "fuzz"
    root.mkdir(exist_ok=True)
    out = only_data_errors(lambda p: TtplaSource(root, TtplaCfg()).load(p.stem), root / "f.json", data)
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
    "imagePath": st.sampled_from(["a.png", "../a.png", "gone.png", "a\x00"]) | JSONS,
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
    out = only_data_errors(lambda p: TtplaSource(root, TtplaCfg()).load(p.stem), root / "f.json",
                           json.dumps(doc).encode())
    assert out is None or set(np.unique(out.mask).tolist()) <= {0, LINE, TOWER, IGNORE_INDEX}
