"""ONNX export (metadata, agreement with PyTorch) and the predict command."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from pipeline.artifact import save_model
from pipeline.config import ModelCfg
from pipeline.errors import DataError, PipelineError
from pipeline.export import check_export, export_onnx
from pipeline.inference.photos import predict_images
from pipeline.inference.predictor import Predictor
from pipeline.inference.route import input_images
from pipeline.models import create_model
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory, params):
    """A tiny randomly initialised model, saved as a model folder and exported to ONNX."""
    torch.manual_seed(0)
    cfg = ModelCfg.model_validate(params["model"])
    model = create_model(cfg).eval()
    folder = tmp_path_factory.mktemp("model")
    meta = {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.37}
    save_model(model, folder / "dense", meta)
    export_onnx(model, {**meta, "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}}, folder / "m.onnx", 64, 64)
    return model, folder


def test_onnx_matches_pytorch_on_other_sizes_and_batches(trained_like):
    model, folder = trained_like
    images = [np.random.default_rng(i).standard_normal((3, h, w)).astype(np.float32)
              for i, (h, w) in enumerate([(64, 64), (96, 160)])]
    assert check_export(model, folder / "m.onnx", images, tolerance=1e-4) < 1e-4


def test_onnx_check_fails_when_the_model_differs(trained_like):
    model, folder = trained_like
    other = create_model(ModelCfg.model_validate(json.loads((folder / "dense" / "model.json").read_text())["model"]))
    images = [np.random.default_rng(0).standard_normal((3, 64, 64)).astype(np.float32)]
    with pytest.raises(PipelineError, match="differs from PyTorch"):
        check_export(other.eval(), folder / "m.onnx", images, tolerance=1e-4)


def test_onnx_carries_its_metadata(trained_like):
    import onnxruntime as ort

    _, folder = trained_like
    meta = ort.InferenceSession(str(folder / "m.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["normalisation"]) == {"mean": [0.5] * 3, "std": [0.25] * 3}
    assert json.loads(meta["classes"]) == ["background", "line"]
    assert float(meta["threshold"]) == pytest.approx(0.37) and meta["opset"] == "17"


def test_predict_with_checkpoint_and_onnx_agree(trained_like, tmp_path):
    _, folder = trained_like
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(50, 70), (64, 64)]):  # odd sizes are padded inside
        cv2.imwrite(str(tmp_path / f"img{i}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    export_onnx(*_reload(folder / "dense"), tmp_path / "same.onnx", 64, 64)
    images = input_images(tmp_path)
    probs = {kind: Predictor(path).probability(cv2.imread(str(images[0]))[:, :, ::-1])
             for kind, path in (("torch", folder / "dense"), ("onnx", tmp_path / "same.onnx"))}
    assert probs["torch"].shape == (50, 70) and np.abs(probs["torch"] - probs["onnx"]).max() < 1e-4
    assert probs["torch"].std() > 0  # a constant map would agree trivially
    written = predict_images(Predictor(tmp_path / "same.onnx"), images, tmp_path / "out", probability=True)
    mask = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (50, 70) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "out" / "img1_prob.png").exists()


def _reload(folder):
    from pipeline.artifact import load_model

    return load_model(folder)


def test_predict_refuses_bad_inputs_with_one_line(tmp_path, trained_like):
    _, folder = trained_like
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: cannot (read|decode) image"):
        predict_images(Predictor(folder / "dense"), [tmp_path / "broken.jpg"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="no images"):
        input_images(tmp_path / "empty")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(PipelineError, match="bad.onnx: cannot load ONNX model"):
        Predictor(tmp_path / "bad.onnx")
    done = subprocess.run([sys.executable, "-m", "pipeline.predict", "--model", str(folder / "m.onnx"),
                           "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: "
                                                                         "no such file or folder"]
