"""Predict power-line masks with a model folder (model.json + model.pt) or an exported ONNX file.

    python -m pipeline.predict --model checkpoints/final/hqs_l0-0.5 --input photo.jpg --out masks/
    python -m pipeline.predict --model export/model.onnx --input images/ --out masks/ --probability

Writes <name>.png (0 = background, 255 = line) per image, and <name>_prob.png (line
probability x 255) with --probability. The threshold is the model's tuned one unless given.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.data.sources.files import read_rgb
from pipeline.errors import PipelineError, one_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
PAD_MULTIPLE = 32  # as in pipeline.data.datamodule, which would import torch and Lightning here


def line_probability(logits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) logits -> (N, H, W) line probability (sigmoid for 1 channel, else softmax[1]).

    pipeline.metrics.line_probability in NumPy: the ONNX path runs without torch."""
    if logits.shape[1] == 1:
        return 1 / (1 + np.exp(-logits[:, 0]))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted[:, 1] / shifted.sum(axis=1)


class Predictor:
    """Line probability of RGB images, from a model folder or an ONNX file, on the CPU."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        path = Path(path)
        if path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            try:
                self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own untyped errors for bad files
                raise PipelineError(f"{path}: cannot load ONNX model ({one_line(err)})") from None
            meta = self.session.get_modelmeta().custom_metadata_map
            self.normalisation = json.loads(meta.get("normalisation", "{}")) or None
            self.threshold = float(meta.get("threshold", 0.5))
            self.model = None
        else:
            import torch

            from pipeline.pruning.artifact import load_pruned

            if threads:
                torch.set_num_threads(threads)
            self.model, meta = load_pruned(path)
            self.model.eval()
            self.normalisation, self.threshold = meta.get("normalisation"), float(meta.get("threshold", 0.5))
        if not self.normalisation:
            raise PipelineError(f"{path}: no input normalisation recorded with the model")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32, sides multiples of 32 -> (N, C, H, W) logits."""
        if self.model is None:
            return self.session.run(None, {self.session.get_inputs()[0].name: batch})[0]
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xHxW float32, as in training."""
        mean, std = (np.asarray(self.normalisation[k], np.float32) for k in ("mean", "std"))
        return ((rgb.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW line probability (padded to a multiple of 32 inside)."""
        height, width = rgb.shape[:2]
        padded = np.zeros((1, 3, -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE),
                          np.float32)
        padded[0, :, :height, :width] = self.normalise(rgb)
        return line_probability(self.logits(padded))[0, :height, :width]


def write_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 PNG via a temporary file, so no half-written mask is left behind."""
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise PipelineError(f"{path}: cannot encode PNG")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)


def input_images(path: Path) -> list[Path]:
    """The image itself, or the images in a folder (sorted)."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise PipelineError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    return [path]


def predict_images(predictor: Predictor, images: list[Path], out: Path, threshold: float | None = None,
                   probability: bool = False) -> list[Path]:
    """Write a mask (and optionally a probability map) per image; returns the masks written."""
    out.mkdir(parents=True, exist_ok=True)
    cut = predictor.threshold if threshold is None else threshold
    written = []
    for image in tqdm(images, desc="predict", unit="image", disable=len(images) < 2):
        prob = predictor.probability(read_rgb(image))
        write_png(np.where(prob >= cut, 255, 0).astype(np.uint8), out / f"{image.stem}.png")
        if probability:
            write_png(np.round(prob * 255).astype(np.uint8), out / f"{image.stem}_prob.png")
        written.append(out / f"{image.stem}.png")
    return written


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and predict."""
    from pipeline.stages._cli import run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (model.json + model.pt) or .onnx file")
    p.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder for the masks")
    p.add_argument("--threshold", type=float, help="line probability cut (default: the model's tuned threshold)")
    p.add_argument("--probability", action="store_true", help="also write <name>_prob.png")
    p.add_argument("--threads", type=int, help="CPU threads (default: the runtime's choice)")
    args = p.parse_args(argv)

    def body() -> None:
        images = input_images(args.input)
        written = predict_images(Predictor(args.model, args.threads), images, args.out, args.threshold,
                                 args.probability)
        print(f"wrote {len(written)} mask(s) to {args.out}")

    run(body)


if __name__ == "__main__":
    main()
