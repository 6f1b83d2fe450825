"""Large photos: blended windows on the in-memory array give the whole-image result, without seams."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config import PredictCfg
from pipeline.export import export_onnx
from pipeline.inference.photos import predict_images
from pipeline.inference.predictor import Predictor
from tests.test_scene import NORM, ConvNet, texture


@pytest.fixture(scope="module")
def conv_net(tmp_path_factory) -> Predictor:
    """The random conv net of the scene tests (receptive field < 16 px), as ONNX."""
    path = tmp_path_factory.mktemp("photo_model") / "conv.onnx"
    export_onnx(ConvNet().eval(), {"num_classes": 1, "threshold": 0.5, "normalisation": NORM}, path, 64, 64)
    return Predictor(path)


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
