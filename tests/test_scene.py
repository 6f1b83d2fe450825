"""Scene (GeoTIFF) prediction: georeferencing, seams, nodata, bands and scaling, runtimes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from torch import nn

from pipeline.artifact import save_model
from pipeline.config import ModelCfg, PredictCfg
from pipeline.errors import DataError, PipelineError
from pipeline.export import export_onnx
from pipeline.inference.predictor import Predictor
from pipeline.inference.scene import NODATA, PROB_SCALE, predict_scene
from pipeline.inference.scene_reader import is_scene
from pipeline.inference.windows import ramp, window_starts
from pipeline.models import create_model
from tests.conftest import ROOT

CRS = "EPSG:32633"
TRANSFORM = from_origin(500_000.0, 6_000_000.0, 0.5, 0.5)
NORM = {"mean": [0.5] * 3, "std": [0.25] * 3}


def write_scene(path: Path, data: np.ndarray, nodata: float | None = None, crs: str | None = CRS,
                transform=TRANSFORM, **extra) -> Path:
    """Write (bands, H, W) as a GeoTIFF."""
    bands, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=data.dtype,
                       crs=crs, transform=transform, nodata=nodata, **extra) as dst:
        dst.write(data)
    return path


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(3, H, W) uint8 with structure at several scales, so a conv net's output varies."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3) * 4 + noise * 0.5
    return np.clip(128 + 40 * smooth, 0, 255).astype(np.uint8).transpose(2, 0, 1)


class ConvNet(nn.Module):
    """A random conv net whose receptive field is small (under 16 px): away from a window's
    edge its output does not depend on the window, near the edge the zero padding shows."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
            nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * 30


class DarkLines(nn.Module):
    """'Line' = a dark pixel: the line probability is high where the image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -8 * x.mean(dim=1, keepdim=True) - 4


@pytest.fixture(scope="module")
def models(tmp_path_factory, params) -> dict[str, Path]:
    """ONNX files of the two hand-made nets, and the tiny smp model as a folder and as ONNX."""
    folder = tmp_path_factory.mktemp("scene_models")
    meta = {"model": {}, "num_classes": 2, "threshold": 0.5, "normalisation": NORM}
    export_onnx(ConvNet().eval(), meta, folder / "conv.onnx", 64, 64)
    export_onnx(DarkLines().eval(), meta, folder / "dark.onnx", 64, 64)
    torch.manual_seed(0)
    cfg = ModelCfg.model_validate(params["model"])
    smp_model = create_model(cfg).eval()
    smp_meta = {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5, "normalisation": NORM}
    save_model(smp_model, folder / "smp", smp_meta)
    export_onnx(smp_model, smp_meta, folder / "smp.onnx", 64, 64)
    return {"conv": folder / "conv.onnx", "dark": folder / "dark.onnx", "smp": folder / "smp",
            "smp_onnx": folder / "smp.onnx"}


def read_prob(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1).astype(np.float32) / PROB_SCALE


def test_windows_cover_the_scene_on_the_32px_grid_and_ramps_cross_fade():
    for length in (100, 448, 449, 1000, 1024):
        starts = window_starts(length, 128, 64)
        assert all(s % 32 == 0 for s in starts) and starts[0] == 0
        assert starts[-1] + 128 >= length and starts[-1] + 128 < length + 32 or length <= 128
        assert all(b - a <= 64 for a, b in zip(starts, starts[1:], strict=False))
    weight = ramp(128, 64)
    assert weight[:64] + weight[64:] == pytest.approx(np.ones(64), abs=1e-3)  # two windows sum to 1
    assert weight.min() > 0 and weight[0] < 0.01 and (ramp(128, 64, blend=False) == 1).all()


def test_outputs_keep_crs_transform_and_shape(models, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", texture(330, 470))
    out = predict_scene(Predictor(models["conv"]), scene, tmp_path / "out", PredictCfg(tile=128, overlap=32),
                        probability=True, progress=False)
    assert set(out) == {"mask", "probability"}
    for path in out.values():
        with rasterio.open(path) as src:
            assert src.crs.to_string() == CRS and src.transform == TRANSFORM
            assert (src.height, src.width, src.count) == (330, 470, 1) and src.dtypes[0] == "uint8"
            assert src.nodata == NODATA and src.block_shapes[0] == (256, 256)
            assert src.compression.name.lower() == "deflate"
    with rasterio.open(out["mask"]) as src:
        assert set(np.unique(src.read(1)).tolist()) == {0, 1}  # the net is not constant
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene_mask.tif", "scene_prob.tif"]


@pytest.mark.parametrize("blend", [True, False])
def test_no_seams_scene_equals_its_centre_crop_unless_blending_is_off(models, tmp_path, blend):
    """Windowed scene prediction vs one pass over a centre crop, away from the crop's edges
    (the net's receptive field is < 16 px, so there both see the same pixels)."""
    image = texture(448, 544, seed=1)
    scene = write_scene(tmp_path / "scene.tif", image)
    predictor = Predictor(models["conv"])
    cfg = PredictCfg(tile=128, overlap=64, blend=blend, batch=3)
    prob = read_prob(predict_scene(predictor, scene, tmp_path / "out", cfg, probability=True,
                                   progress=False)["probability"])
    top, left, margin = 96, 128, 24
    crop = image[:, top: top + 256, left: left + 288].transpose(1, 2, 0)
    reference = predictor.probability(np.ascontiguousarray(crop))[margin:-margin, margin:-margin]
    error = np.abs(prob[top + margin: top + 256 - margin, left + margin: left + 288 - margin] - reference)
    assert reference.std() > 0.03  # a non-constant model, or seams could not show
    tolerance = 0.02  # probability is stored in steps of 1/254
    if blend:
        assert error.max() < tolerance
    else:  # the negative control: the same comparison sees the seams of flat averaging
        assert error.max() > tolerance


def test_nodata_stays_nodata(models, tmp_path):
    image = texture(300, 320, seed=2)
    image[image == 0] = 1
    image[:, 40:120, 60:200] = 0  # nodata = 0 in all bands
    scene = write_scene(tmp_path / "scene.tif", image, nodata=0)
    out = predict_scene(Predictor(models["conv"]), scene, tmp_path / "out", PredictCfg(tile=128, overlap=32),
                        probability=True, progress=False)
    for path in out.values():
        with rasterio.open(path) as src:
            data = src.read(1)
        hole = np.zeros(data.shape, bool)
        hole[40:120, 60:200] = True
        assert (data[hole] == NODATA).all() and (data[~hole] != NODATA).all()


def test_checkpoint_and_onnx_agree_on_a_scene(models, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", texture(200, 300, seed=3))
    cfg = PredictCfg(tile=128, overlap=32, batch=2)
    probs = {kind: read_prob(predict_scene(Predictor(models[kind]), scene, tmp_path / kind, cfg, probability=True,
                                           progress=False)["probability"]) for kind in ("smp", "smp_onnx")}
    assert probs["smp"].std() > 0  # a constant map would agree trivially
    assert np.abs(probs["smp"] - probs["smp_onnx"]).max() <= 1.5 / PROB_SCALE  # at most one rounding step


def test_16_bit_four_band_scene_with_band_selection_and_scaling(models, tmp_path):
    rgb = texture(256, 288, seed=4)
    write_scene(tmp_path / "rgb.tif", rgb)
    # 4 bands as (NIR, B, G, R), 16-bit: RGB x 257 fills 0..65535
    four = np.concatenate([np.full((1, 256, 288), 7, np.uint16), rgb[::-1].astype(np.uint16) * 257])
    write_scene(tmp_path / "four.tif", four)
    predictor, base = Predictor(models["conv"]), PredictCfg(tile=128, overlap=32)
    expected = read_prob(predict_scene(predictor, tmp_path / "rgb.tif", tmp_path / "a", base,
                                       probability=True, progress=False)["probability"])
    fixed = base.model_copy(update={"bands": [4, 3, 2], "scaling": "fixed", "value_range": (0, 65535)})
    got = read_prob(predict_scene(predictor, tmp_path / "four.tif", tmp_path / "b", fixed,
                                  probability=True, progress=False)["probability"])
    assert np.array_equal(got, expected)
    # auto = per-band percentile stretch for 16 bit: runs, and differs from a wrong band order
    auto = base.model_copy(update={"bands": [4, 3, 2]})
    swapped = base.model_copy(update={"bands": [2, 3, 4]})
    a, b = (read_prob(predict_scene(predictor, tmp_path / "four.tif", tmp_path / name, cfg, probability=True,
                                    progress=False)["probability"]) for name, cfg in (("c", auto), ("d", swapped)))
    assert np.abs(a - expected).mean() < np.abs(b - expected).mean()
    with pytest.raises(DataError, match=r"four.tif: band 5 requested but the scene has 4 band\(s\)"):
        predict_scene(predictor, tmp_path / "four.tif", tmp_path / "e", base.model_copy(update={"bands": [5, 3, 2]}),
                      progress=False)
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())


def test_drawn_line_comes_back_as_a_linestring_through_the_cli(models, tmp_path):
    """End to end on the ONNX path (torch must not be imported): a dark 3 px line drawn
    across a bright scene comes back as one LineString close to it, in map coordinates."""
    import cv2
    import shapely

    image = np.full((360, 420, 3), 200, np.uint8)
    start, end = (20, 300), (400, 40)  # (x, y) in pixels
    cv2.line(image, start, end, (20, 20, 20), 3)
    scene = write_scene(tmp_path / "scene.tif", np.ascontiguousarray(image.transpose(2, 0, 1)))
    code = ("import sys; from pipeline.predict import main; main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'the ONNX path imported torch'")
    done = subprocess.run([sys.executable, "-c", code, "--model", str(models["dark"]), "--input", str(scene),
                           "--out", str(tmp_path / "out"), "--vector", "--tile", "128", "--overlap", "32"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = json.loads((tmp_path / "out" / "scene_lines.geojson").read_text())
    assert lines["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert len(lines["features"]) == 1
    feature = lines["features"][0]
    got = shapely.LineString(feature["geometry"]["coordinates"])
    drawn = shapely.LineString([TRANSFORM * (x + 0.5, y + 0.5) for x, y in (start, end)])
    assert got.hausdorff_distance(drawn) < 3 * 0.5  # within 3 px of 0.5 m
    assert feature["properties"]["length"] == pytest.approx(got.length)
    assert got.length == pytest.approx(drawn.length, rel=0.03)


def test_scene_route_is_chosen_by_georeferencing(tmp_path):
    with pytest.warns(NotGeoreferencedWarning):
        plain = write_scene(tmp_path / "plain.tif", texture(64, 64), crs=None, transform=rasterio.Affine.identity())
    geo = write_scene(tmp_path / "geo.tif", texture(64, 64))
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    assert is_scene(geo) and not is_scene(plain) and not is_scene(tmp_path / "broken.tif")


def test_bad_scene_fails_with_one_line_and_leaves_nothing(models, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", texture(512, 512, seed=5), tiled=True, blockxsize=64,
                        blockysize=64, compress="deflate")
    data = scene.read_bytes()
    scene.write_bytes(data[: len(data) // 2])  # header intact, the later tiles cut off
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "pipeline.predict", "--model", str(models["conv"]), "--input",
                           str(scene), "--out", str(out), "--probability", "--vector", "--tile", "128",
                           "--overlap", "32"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {scene}: cannot read raster (") and "Traceback" not in done.stderr
    assert list(out.iterdir()) == []  # no half-written output, not even a temporary file


def test_config_refuses_misaligned_windows_and_missing_ranges():
    with pytest.raises(ValueError, match="tile 100 must be a multiple of 32"):
        PredictCfg(tile=100)
    with pytest.raises(ValueError, match="overlap 512 must be < tile 512"):
        PredictCfg(overlap=512)
    with pytest.raises(ValueError, match="value_range"):
        PredictCfg(scaling="fixed")


def test_cuda_without_a_gpu_is_a_clear_error(models):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(PipelineError, match="smp: --device cuda, but PyTorch sees no CUDA device"):
        Predictor(models["smp"], device="cuda")


def test_benchmark_scenes_are_georeferenced_and_hold_lines(tmp_path):
    from bench.scene import make_scene

    path = make_scene(tmp_path / "scene.tif", 600)
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count) == (600, 600, 3) and src.crs.to_epsg() == 32633
        assert src.block_shapes[0] == (256, 256) and src.read().std() > 10
