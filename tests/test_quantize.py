"""INT8 static quantisation (QDQ) of the exported tiny model, and predict on the INT8 file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from pipeline.config import ModelCfg
from pipeline.export import export_onnx
from pipeline.inference.predictor import Predictor
from pipeline.models import create_model
from pipeline.quantize import first_and_last_convs, quantize_int8, training_crops
from pipeline.stages.export import check_inputs

CARD = {"num_classes": 2, "threshold": 0.37, "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, params, tiny_data):
    """The tiny model exported, then quantised once (the slow part) with its first
    convolution and head kept in fp32."""
    torch.manual_seed(0)
    cfg = ModelCfg.model_validate(params["model"])
    folder = tmp_path_factory.mktemp("int8")
    export_onnx(create_model(cfg).eval(), {**CARD, "model": cfg.model_dump()}, folder / "fp32.onnx", 64, 64)
    keep = first_and_last_convs(folder / "fp32.onnx")
    record = quantize_int8(folder / "fp32.onnx", folder / "int8.onnx", training_crops(tiny_data, 8, 64), keep_fp32=keep)
    return folder, keep, record


def _quantized_convs(path) -> tuple[list[str], list[str]]:
    """(names of Conv nodes whose input and weight both come from DequantizeLinear, all Conv names)."""
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    wrapped = [
        node.name
        for node in convs
        if all(name in producer and producer[name].op_type == "DequantizeLinear" for name in node.input[:2])
    ]
    return wrapped, [node.name for node in convs]


def test_int8_model_has_qdq_pairs_around_its_convolutions_but_the_kept_ones(quantized):
    folder, keep, record = quantized
    wrapped, convs = _quantized_convs(folder / "int8.onnx")
    assert len(convs) == len(_quantized_convs(folder / "fp32.onnx")[1]) > 10
    assert len(wrapped) >= 0.9 * len(convs)
    assert set(convs) - set(wrapped) == set(keep) and len(keep) == 2  # the kept ones stay fp32, only they
    initializers = {init.name: init for init in onnx.load(str(folder / "int8.onnx")).graph.initializer}
    kept = [node for node in onnx.load(str(folder / "int8.onnx")).graph.node if node.name in keep]
    assert all(initializers[node.input[1]].data_type == onnx.TensorProto.FLOAT for node in kept)
    assert record["activations"] == "U8" and record["weights"] == "S8" and record["fp32_nodes"] == keep


def test_int8_logits_follow_fp32_on_test_images(quantized, tiny_data):
    import onnxruntime as ort

    folder, _, _ = quantized
    sessions = [
        ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        for name in ("fp32.onnx", "int8.onnx")
    ]
    for image in check_inputs(tiny_data, 3):
        fp32, int8 = (s.run(None, {"image": image[None]})[0].ravel() for s in sessions)
        assert fp32.std() > 0 and not np.array_equal(fp32, int8)  # a real model, really quantised
        assert fp32 @ int8 / (np.linalg.norm(fp32) * np.linalg.norm(int8)) >= 0.99


def test_predictor_runs_the_int8_model_with_the_fp32_metadata(quantized):
    folder, _, _ = quantized
    rgb = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    fp32, int8 = Predictor(folder / "fp32.onnx"), Predictor(folder / "int8.onnx")
    assert int8.threshold == pytest.approx(0.37) and int8.normalisation == CARD["normalisation"]
    assert np.abs(fp32.probability(rgb) - int8.probability(rgb)).max() < 0.1
    meta = {p.key: p.value for p in onnx.load(str(folder / "int8.onnx")).metadata_props}
    assert json.loads(meta["quantization"])["format"] == "QDQ"


def test_quantize_refuses_unknown_nodes_and_types(quantized, tmp_path):
    folder, _, _ = quantized
    crops = [np.zeros((3, 64, 64), np.float32)]
    with pytest.raises(ValueError, match="not in the graph"):
        quantize_int8(folder / "fp32.onnx", tmp_path / "x.onnx", crops, keep_fp32=["/no/such/Conv"])
    with pytest.raises(ValueError, match="types must be in"):
        quantize_int8(folder / "fp32.onnx", tmp_path / "x.onnx", crops, activation_type="S4")
    assert not (tmp_path / "x.onnx").exists()
