"""Large photos: blended windows on the in-memory array give the whole-image result, without seams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import PredictCfg
from pipeline.export import export_onnx
from pipeline.inference.photos import predict_images
from pipeline.inference.predictor import Predictor
from pipeline.overlay import PREDICTED, overlay
from tests.conftest import ROOT
from tests.test_scene import NORM, ConvNet, texture


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory) -> Path:
    """The random conv net of the scene tests (receptive field < 16 px), as ONNX."""
    path = tmp_path_factory.mktemp("photo_model") / "conv.onnx"
    card = {"model": {}, "num_classes": 2, "threshold": 0.5, "normalisation": NORM}
    export_onnx(ConvNet().eval(), card, path, 64, 64)
    return path


@pytest.fixture(scope="module")
def conv_net(conv_onnx) -> Predictor:
    return Predictor(conv_onnx)


@pytest.mark.parametrize("blend", [True, False])
def test_large_photo_in_windows_equals_the_whole_image_pass_unless_blending_is_off(conv_net, tmp_path, blend):
    height, width = 420, 610  # not multiples of 32: the last windows are padded as the whole pass is
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), texture(height, width, seed=7).transpose(1, 2, 0)[:, :, ::-1])
    probs = {}
    for route, cfg in (("whole", PredictCfg(max_whole=1024)),
                       ("windows", PredictCfg(max_whole=256, tile=128, overlap=64, batch=3, blend=blend))):
        masks = predict_images(conv_net, [photo], tmp_path / route, probability=True, cfg=cfg)
        assert cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == (height, width)
        probs[route] = cv2.imread(str(tmp_path / route / "photo_prob.png"), cv2.IMREAD_UNCHANGED) / 255
    margin = 16  # away from the photo's borders
    whole, windows = (p[margin:-margin, margin:-margin] for p in (probs["whole"], probs["windows"]))
    assert whole.std() > 0.03  # a non-constant model, or seams could not show
    error = np.abs(windows - whole).max()
    tolerance = 0.02  # the PNG holds probability in steps of 1/255
    if blend:
        assert error < tolerance
    else:  # the negative control: the same comparison sees the seams of flat averaging
        assert error > tolerance


def test_photo_at_the_limit_runs_whole(conv_net, tmp_path):
    """max_whole is inclusive; at it the photo is one pass, exactly Predictor.probability."""
    rgb = texture(96, 128, seed=8).transpose(1, 2, 0)
    cv2.imwrite(str(tmp_path / "p.png"), rgb[:, :, ::-1])
    predict_images(conv_net, [tmp_path / "p.png"], tmp_path / "out", probability=True,
                   cfg=PredictCfg(max_whole=128, tile=64, overlap=32, blend=False))
    expected = np.round(conv_net.probability(np.ascontiguousarray(rgb)) * 255).astype(np.uint8)
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "p_prob.png"), cv2.IMREAD_UNCHANGED), expected)



def test_cli_max_whole_flag_sends_a_photo_to_the_windows_without_torch(conv_onnx, conv_net, tmp_path):
    """`python -m pipeline.predict --max-whole` on an ONNX model: the window flags take effect
    (flat averaging, i.e. blend off, shows seams only in windows), and torch is never imported."""
    rgb = np.ascontiguousarray(texture(200, 300, seed=9).transpose(1, 2, 0))
    cv2.imwrite(str(tmp_path / "p.png"), rgb[:, :, ::-1])
    params = tmp_path / "params.yaml"
    params.write_text("predict: {blend: false}\n")
    code = ("import sys; from pipeline.predict import main; main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'the ONNX path imported torch'")
    whole = np.round(conv_net.probability(rgb) * 255)
    errors = {}
    for max_whole in (300, 299):
        out = tmp_path / str(max_whole)
        flags = ["--model", str(conv_onnx), "--input", str(tmp_path / "p.png"), "--out", str(out), "--probability",
                 "--params", str(params), "--max-whole", str(max_whole), "--tile", "128", "--overlap", "64"]
        done = subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        errors[max_whole] = np.abs(cv2.imread(str(out / "p_prob.png"), cv2.IMREAD_UNCHANGED) - whole).max()
    assert errors[300] == 0 and errors[299] > 5  # at the limit one pass; above it, windows (seams: blend off)


def test_overlay_marks_exactly_the_predicted_lines_in_a_colour_blind_safe_colour(conv_net, tmp_path):
    rgb = np.ascontiguousarray(texture(96, 128, seed=4).transpose(1, 2, 0))
    cv2.imwrite(str(tmp_path / "p.png"), rgb[:, :, ::-1])
    predict_images(conv_net, [tmp_path / "p.png"], tmp_path / "out", threshold=0.5, with_overlay=True)
    mask = cv2.imread(str(tmp_path / "out" / "p.png"), cv2.IMREAD_UNCHANGED) > 0
    shown = cv2.imread(str(tmp_path / "out" / "p_overlay.png"))[:, :, ::-1]  # back to RGB
    assert 0 < mask.mean() < 1  # both kinds of pixel are there to check
    assert (shown[mask] == PREDICTED).all()
    far = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0  # beyond the 1 px display widening
    assert far.any() and (shown[far] == shown[far][:, :1]).all()  # grey: R = G = B


def test_predict_overlay_flag_writes_the_report_overlay_for_a_photo_without_ground_truth(conv_onnx, tmp_path):
    rgb = np.ascontiguousarray(texture(64, 96, seed=5).transpose(1, 2, 0))
    cv2.imwrite(str(tmp_path / "p.png"), rgb[:, :, ::-1])
    done = subprocess.run([sys.executable, "-m", "pipeline.predict", "--model", str(conv_onnx), "--input",
                           str(tmp_path / "p.png"), "--out", str(tmp_path / "out"), "--overlay"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    mask = cv2.imread(str(tmp_path / "out" / "p.png"), cv2.IMREAD_UNCHANGED) > 0
    shown = cv2.imread(str(tmp_path / "out" / "p_overlay.png"))[:, :, ::-1]
    assert mask.any() and np.array_equal(shown, overlay(rgb, mask))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.png", "p_overlay.png"]  # no temporary left


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "high"])
def test_a_threshold_outside_zero_one_is_refused_with_one_line(conv_onnx, tmp_path, value):
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((32, 32, 3), np.uint8))
    done = subprocess.run([sys.executable, "-m", "pipeline.predict", "--model", str(conv_onnx), "--input",
                           str(tmp_path / "p.png"), "--out", str(tmp_path / "out"), "--threshold", value],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    assert len(done.stderr.splitlines()) == 1 and "--threshold" in done.stderr and value in done.stderr
