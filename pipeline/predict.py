"""Predict power-line masks with a model folder (model.json + model.pt) or an exported ONNX file.

    python -m pipeline.predict --model checkpoints/final/hqs_l0-0.5 --input photo.jpg --out masks/
    python -m pipeline.predict --model export/model.onnx --input images/ --out masks/ --probability
    python -m pipeline.predict --model export/model.onnx --input scene.tif --out lines/ --vector

Images (jpg, png, tif, bmp): writes <name>.png (0 = background, 255 = line) per image, and
<name>_prob.png (line probability x 255) with --probability.

Scenes: a .tif/.tiff with a CRS or a geotransform (or any TIFF with --scene) is predicted
in overlapping, blended windows with windowed reads and writes, so its size is not
limited by memory. Writes <stem>_mask.tif (0 background, 1 line, 255 nodata), with
--probability <stem>_prob.tif (probability x 254, 255 nodata), with --vector
<stem>_lines.geojson (LineStrings in the scene's CRS with a `length` in its units); the
GeoTIFFs keep the scene's CRS and transform, in 256 px deflate tiles. Pixels that are
nodata in the scene are nodata in the outputs. Bands, scaling (for 16-bit or float
scenes), window size, overlap and batch come from the `predict` section of --params
(params.yaml), and the flags below override them. See pipeline/scene.py for the details.

The threshold is the model's tuned one unless given. Outputs are written to temporary
files and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import PAD_MULTIPLE, PredictCfg
from pipeline.data.sources.files import read_rgb
from pipeline.errors import PipelineError, one_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def line_probability(logits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) logits -> (N, H, W) line probability (sigmoid for 1 channel, else softmax[1]).

    pipeline.metrics.line_probability in NumPy: the ONNX path runs without torch."""
    if logits.shape[1] == 1:
        return 1 / (1 + np.exp(-logits[:, 0]))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted[:, 1] / shifted.sum(axis=1)


class Predictor:
    """Line probability of RGB images, from a model folder or an ONNX file, on the CPU or a GPU."""

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu") -> None:
        path = Path(path)
        self.device = device
        if path.suffix == ".onnx":
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
                self.session = ort.InferenceSession(str(path), options, providers=providers)
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
            if device == "cuda" and not torch.cuda.is_available():
                raise PipelineError(f"{path}: --device cuda, but PyTorch sees no CUDA device")
            self.model, meta = load_pruned(path)
            self.model.eval().to(device)
            self.normalisation, self.threshold = meta.get("normalisation"), float(meta.get("threshold", 0.5))
        if not self.normalisation:
            raise PipelineError(f"{path}: no input normalisation recorded with the model")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32, sides multiples of 32 -> (N, C, H, W) logits."""
        if self.model is None:
            return self.session.run(None, {self.session.get_inputs()[0].name: batch})[0]
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).cpu().numpy()

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


def _csv(kind: type) -> Any:
    """An argparse type for comma-separated values, e.g. --bands 3,2,1."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def scene_config(params: Path | None, args: argparse.Namespace) -> PredictCfg:
    """The `predict` section of `params` (defaults if None), with the CLI flags given on top."""
    from pipeline.params import load_params, parse_section

    values = dict(load_params(params).get("predict") or {}) if params else {}
    for key in ("tile", "overlap", "batch", "bands", "scaling", "value_range"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return parse_section({"predict": values}, "predict", PredictCfg, f"{params or 'defaults'} + flags")


def predict_inputs(predictor: Predictor, inputs: list[Path], out: Path, args: argparse.Namespace,
                   cfg: PredictCfg | None) -> tuple[list[Path], list[Path]]:
    """Scenes go the scene route, everything else the image route; (images, scenes) done."""
    scenes = []
    if any(p.suffix.lower() in (".tif", ".tiff") for p in inputs):
        from pipeline.scene import predict_scene
        from pipeline.scene_reader import SCENE_SUFFIXES, is_scene

        scenes = [p for p in inputs if (args.scene and p.suffix.lower() in SCENE_SUFFIXES) or is_scene(p)]
        for scene in scenes:
            written = predict_scene(predictor, scene, out, cfg, args.threshold, args.probability, args.vector)
            print(f"{scene} -> {', '.join(str(p) for p in written.values())}")
    images = [p for p in inputs if p not in scenes]
    if images:
        predict_images(predictor, images, out, args.threshold, args.probability)
    return images, scenes


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and predict."""
    from pipeline.stages._cli import run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (model.json + model.pt) or .onnx file")
    p.add_argument("--input", type=Path, required=True, help="an image, a GeoTIFF scene, or a folder of them")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--threshold", type=float, help="line probability cut (default: the model's tuned threshold)")
    p.add_argument("--probability", action="store_true", help="also write the probability (<name>_prob.png/.tif)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the runtime's choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: PyTorch on the GPU, or ONNX Runtime's CUDA provider (onnxruntime-gpu)")
    g = p.add_argument_group("scenes (GeoTIFF)", "defaults from the `predict` section of --params")
    g.add_argument("--params", type=Path, help="params file (default: params.yaml if present, else built-in)")
    g.add_argument("--scene", action="store_true", help="treat every .tif/.tiff as a scene, georeferenced or not")
    g.add_argument("--vector", action="store_true", help="also write <stem>_lines.geojson: the mask skeletonised, "
                   "traced, simplified (predict.simplify px) and without lines under predict.min_length px")
    g.add_argument("--tile", type=int, help="window side in px, a multiple of 32 (predict.tile)")
    g.add_argument("--overlap", type=int, help="px shared by neighbouring windows, a multiple of 32 (predict.overlap)")
    g.add_argument("--batch", type=int, help="windows per forward pass (predict.batch)")
    g.add_argument("--bands", type=_csv(int), help="bands used as R,G,B (or one grey band), from 1, e.g. 3,2,1 "
                   "(predict.bands; default 1,2,3)")
    g.add_argument("--scaling", choices=("auto", "percentile", "fixed"),
                   help="to 0..255: auto = uint8 as is, other dtypes by percentile; percentile = per-band "
                        "predict.percentiles stretch; fixed = --value-range (predict.scaling)")
    g.add_argument("--value-range", type=_csv(float), help="low,high mapped to 0..255 with --scaling fixed, "
                   "e.g. 0,10000 (predict.value_range)")
    args = p.parse_args(argv)

    def body() -> None:
        logging.getLogger("rasterio").setLevel(logging.WARNING)  # GDAL errors arrive as exceptions too
        inputs = input_images(args.input)
        cfg = None
        if any(path.suffix.lower() in (".tif", ".tiff") for path in inputs):
            params = args.params or (Path("params.yaml") if Path("params.yaml").exists() else None)
            cfg = scene_config(params, args)
        predictor = Predictor(args.model, args.threads, args.device)
        images, scenes = predict_inputs(predictor, inputs, args.out, args, cfg)
        print(f"wrote {len(images)} mask(s) and {len(scenes)} scene(s) to {args.out}")

    run(body)


if __name__ == "__main__":
    main()
