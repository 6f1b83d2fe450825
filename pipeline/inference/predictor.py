"""Line probability of RGB images, from a model folder (PyTorch) or an exported ONNX file.

The ONNX path imports no torch, so a device with only numpy and onnxruntime can run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import PAD_MULTIPLE
from pipeline.errors import PipelineError, one_line


def line_probability(logits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) logits -> (N, H, W) line probability (sigmoid for 1 channel, else softmax[1]).

    pipeline.metrics.line_probability in NumPy: the ONNX path runs without torch."""
    if logits.shape[1] == 1:
        return 1 / (1 + np.exp(-logits[:, 0]))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted[:, 1] / shifted.sum(axis=1)


def load_torch_model(path: Path) -> tuple[Any, dict | None, float, dict[str, Any]]:
    """(model, input normalisation, tuned threshold, model card as JSON) of a model folder.

    The one place inference loads a model folder, so that changing the loader is one edit."""
    from pipeline.artifact import load_model

    model, card = load_model(path)
    return model, card.normalisation.model_dump(), card.threshold, card.to_json()


class Predictor:
    """Line probability of RGB images, from a model folder or an ONNX file, on the CPU or a GPU."""

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu") -> None:
        path = Path(path)
        self.device = device
        self.model = None
        if path.suffix == ".onnx":
            self.session = _onnx_session(path, threads, device)
            meta = self.session.get_modelmeta().custom_metadata_map
            self.normalisation = json.loads(meta.get("normalisation", "{}")) or None
            self.threshold = float(meta.get("threshold", 0.5))
            self.card = json.loads(meta.get("model_card", "{}"))  # {} for files exported before cards
        else:
            import torch

            if threads:
                torch.set_num_threads(threads)
            if device == "cuda" and not torch.cuda.is_available():
                raise PipelineError(f"{path}: --device cuda, but PyTorch sees no CUDA device")
            self.model, self.normalisation, self.threshold, self.card = load_torch_model(path)
            self.model.eval().to(device)
        if not self.normalisation:
            raise PipelineError(f"{path}: no input normalisation recorded with the model")

    def synthetic_only(self) -> bool:
        """Whether the model's card says it saw only synthetic training images."""
        return (self.card.get("training_data") or {}).get("source") == "synthetic"

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32, sides multiples of 32 -> (N, C, H, W) logits."""
        if self.model is None:
            return self.session.run(None, {self.session.get_inputs()[0].name: batch})[0]
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).cpu().numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32, sides multiples of 32 -> (N, H, W) line probability."""
        return line_probability(self.logits(batch))

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xHxW float32, as in training."""
        mean, std = (np.asarray(self.normalisation[k], np.float32) for k in ("mean", "std"))
        return ((rgb.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW line probability, the whole image in one pass (zero-padded
        to a multiple of 32 in normalised space, as the scene windows are)."""
        height, width = rgb.shape[:2]
        padded = np.zeros((1, 3, -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE),
                          np.float32)
        padded[0, :, :height, :width] = self.normalise(rgb)
        return self.probabilities(padded)[0, :height, :width]


def _onnx_session(path: Path, threads: int | None, device: str) -> Any:
    """An ONNX Runtime session of `path`, on the CUDA provider first for device "cuda"."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PipelineError(f"{path}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own untyped errors for bad files
        raise PipelineError(f"{path}: cannot load ONNX model ({one_line(err)})") from None
