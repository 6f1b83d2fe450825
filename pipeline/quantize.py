"""INT8 post-training static quantisation of an exported ONNX model, with ONNX Runtime's tools.

QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantised op, which ONNX
Runtime fuses into integer kernels), per-channel weights, activation ranges calibrated
(MinMax) on training crops. Unsigned 8-bit activations with signed 8-bit weights (U8S8)
by default: on the AVX512-VNNI CPU of issue 15, signed activations (S8S8) gave no speed-up
at all, U8S8 about 2x on the dense model. INT8 pays off on CPUs with AVX512-VNNI (or
AVX-VNNI); without VNNI the integer kernels gain little over fp32.

Sensitive nodes (the first convolution sees raw pixels, the head produces the logits the
threshold was tuned on) can be kept in fp32 by name: `first_and_last_convs` names them.
The INT8 file keeps the fp32 file's metadata (normalisation, classes, threshold), so
`pipeline.predict` and the scene route run it like any exported model.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

QUANT_TYPES = ("U8", "S8")


def training_crops(data: Path, count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """`count` normalised training crops (3 x size x size float32) of a prepared data set,
    drawn as training draws them (mostly around line pixels), without augmentation."""
    from pipeline.config import TrainCfg
    from pipeline.data.datamodule import PreparedSplit, train_transform

    split = PreparedSplit(data, "train", train_transform(TrainCfg(crop_size=size)))
    if not len(split):
        raise ValueError(f"{data}: no training images to calibrate on")
    return [split[(i % len(split), seed + i)]["image"].numpy() for i in range(count)]


def _reader(input_name: str, crops: Iterable[np.ndarray]) -> Any:
    """A CalibrationDataReader feeding one crop per batch."""
    from onnxruntime.quantization import CalibrationDataReader

    class CropReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{input_name: np.asarray(crop, np.float32)[None]} for crop in crops])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    return CropReader()


def first_and_last_convs(path: Path) -> list[str]:
    """Names of the first and the last Conv node of an ONNX file (graph order is topological):
    the image's first convolution and the segmentation head."""
    import onnx

    convs = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node if node.op_type == "Conv"]
    if not convs:
        raise ValueError(f"{path}: no Conv nodes")
    return [convs[0], convs[-1]] if len(convs) > 1 else convs


def unknown_nodes(path: Path, names: Sequence[str]) -> list[str]:
    """The `names` that are not nodes of the ONNX file at `path`: quantize_static ignores
    unknown names in nodes_to_exclude, so callers refuse them instead."""
    import onnx

    return sorted(set(names) - {node.name for node in onnx.load(str(path), load_external_data=False).graph.node})


def quantize_int8(
    fp32: Path,
    int8: Path,
    crops: Sequence[np.ndarray],
    activation_type: str = "U8",
    weight_type: str = "S8",
    per_channel: bool = True,
    keep_fp32: Sequence[str] = (),
) -> dict[str, Any]:
    """Write `int8`: `fp32` statically quantised (QDQ), calibrated on `crops` (normalised
    3xHxW float32). `keep_fp32` names nodes left in fp32. Returns what was done."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"U8": QuantType.QUInt8, "S8": QuantType.QInt8}
    if activation_type not in types or weight_type not in types:
        raise ValueError(f"activation and weight types must be in {QUANT_TYPES}, got {activation_type}, {weight_type}")
    if not len(crops):
        raise ValueError("no calibration crops")
    source = onnx.load(str(fp32))
    with tempfile.TemporaryDirectory() as tmp:
        # ONNX Runtime's recommended first step: shape inference and graph clean-up (no layout changes)
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # checked on the prepared graph, which is the one quantised (its clean-up may rename nodes)
        if unknown := unknown_nodes(prepared, keep_fp32):
            raise ValueError(f"{fp32}: keep_fp32 names nodes that are not in the graph: {unknown}")
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            _reader(source.graph.input[0].name, crops),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=types[activation_type],
            weight_type=types[weight_type],
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(keep_fp32),
        )
        model = onnx.load(str(quantized))
    record = {
        "format": "QDQ",
        "activations": activation_type,
        "weights": weight_type,
        "per_channel": per_channel,
        "calibration": "MinMax",
        "calibration_crops": len(crops),
        "fp32_nodes": list(keep_fp32),
    }
    del model.metadata_props[:]
    for prop in source.metadata_props:  # normalisation, classes, threshold: what predict needs
        model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key="quantization", value=json.dumps(record))
    int8.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = int8.with_name(f".{int8.name}.tmp")
    onnx.save(model, str(tmp_path))
    os.replace(tmp_path, int8)
    return record
