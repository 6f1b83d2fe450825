"""ONNX export of a model folder, carrying what a deployment needs to use it.

The ONNX file's metadata holds the input normalisation, the class names, the tuned
threshold and the opset, so `predict` (or any ONNX Runtime user) needs no model.json.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.card import ModelCard
from pipeline.errors import PipelineError
from pipeline.labels import CLASS_NAMES

OPSET = 17
INPUT, OUTPUT = "image", "logits"


def onnx_metadata(card: ModelCard, opset: int) -> dict[str, str]:
    """Metadata strings for the ONNX file, from the model card."""
    return {
        "normalisation": json.dumps(card.normalisation.model_dump()),
        "input": "RGB, float32 NCHW scaled to [0, 1] then normalised; H and W multiples of 32",
        "output": "logits; 1 channel = line (sigmoid), else one per class (softmax)",
        "classes": json.dumps([CLASS_NAMES[c] for c in range(card.num_classes)]),
        "threshold": str(card.threshold),
        "opset": str(opset),
        "model": json.dumps(card.model.model_dump()),
        # the whole card but what only rebuilds the network in PyTorch (pipeline.card, pipeline.model_card)
        "model_card": json.dumps(card.model_dump(mode="json", exclude_none=True,
                                                 exclude={"pruned_channels", "train"})),
    }


def export_onnx(model: nn.Module, card: ModelCard | dict[str, Any] | None, path: Path, height: int, width: int,
                opset: int = OPSET, dynamic: bool = True) -> None:
    """Write `model` as ONNX with its card's metadata (none if `card` is None), atomically.
    Batch, height and width are dynamic, or with `dynamic=False` fixed at 1 x 3 x height x
    width (the latency table times static files: pipeline/latency/files.py)."""
    import onnx

    card = card if card is None or isinstance(card, ModelCard) else ModelCard.model_validate(card)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no extra packages
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval().cpu(), (torch.zeros(1, 3, height, width),), str(tmp), opset_version=opset,
                          input_names=[INPUT], output_names=[OUTPUT], dynamo=False,
                          dynamic_axes={INPUT: axes, OUTPUT: axes} if dynamic else None)
    proto = onnx.load(str(tmp))
    for key, value in (onnx_metadata(card, opset) if card is not None else {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)


@torch.inference_mode()
def max_abs_difference(model: nn.Module, path: Path, images: list[np.ndarray]) -> float:
    """Largest |ONNX Runtime logits - PyTorch logits| over `images` (normalised CHW float32,
    sides multiples of 32)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = model.eval().cpu()
    worst = 0.0
    for image in images:
        batch = image[None].astype(np.float32)
        ours = session.run(None, {INPUT: batch})[0]
        worst = max(worst, float(np.abs(ours - model(torch.from_numpy(batch)).numpy()).max()))
    return worst


def check_export(model: nn.Module, path: Path, images: list[np.ndarray], tolerance: float) -> float:
    """max_abs_difference, or a PipelineError when it exceeds `tolerance`."""
    diff = max_abs_difference(model, path, images)
    if diff > tolerance:
        raise PipelineError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    return diff
