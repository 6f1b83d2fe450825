"""The image route: photos (jpg, png, tif, bmp) to <name>.png masks and <name>_prob.png maps.

A photo whose long side is at most `predict.max_whole` px runs through the network in one
pass. A larger one goes through the same blended overlapping windows as a scene
(pipeline.inference.windows, on the in-memory array), so the network's memory stays that
of one batch of windows whatever the photo's size; away from the photo's borders (within
the network's receptive field of them) the result is the one pass's, up to float rounding,
and the blending leaves no seams. What grows with the photo is the decoded RGB (3 bytes
per pixel) and the uint8 outputs (1 byte per pixel each).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import PredictCfg
from pipeline.data.sources.files import read_rgb
from pipeline.errors import PipelineError
from pipeline.inference.predictor import Predictor
from pipeline.inference.windows import blended_rows
from pipeline.overlay import overlay


def photo_rows(predictor: Predictor, rgb: np.ndarray, cfg: PredictCfg) -> Iterator[tuple[int, np.ndarray]]:
    """(y0, line probability of rows y0..) of an HxWx3 uint8 photo, top to bottom: one band
    for a photo within cfg.max_whole, else one band per strip of blended windows."""
    height, width = rgb.shape[:2]
    if max(height, width) <= cfg.max_whole:
        yield 0, predictor.probability(rgb)
        return

    def read(y0: int, x0: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        window = rgb[y0: y0 + rows, x0: x0 + cols]
        return window, np.ones(window.shape[:2], bool)

    for y0, prob, _ in blended_rows(predictor, read, height, width, cfg):
        yield y0, prob


def photo_outputs(predictor: Predictor, rgb: np.ndarray, cfg: PredictCfg, cut: float,
                  probability: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 mask (255 = line probability >= cut) and, if asked for, probability x 255 of a photo."""
    mask = np.empty(rgb.shape[:2], np.uint8)
    prob8 = np.empty(rgb.shape[:2], np.uint8) if probability else None
    for y0, prob in photo_rows(predictor, rgb, cfg):
        rows = slice(y0, y0 + len(prob))
        mask[rows] = np.where(prob >= cut, 255, 0)
        if prob8 is not None:
            prob8[rows] = np.round(prob * 255)
    return mask, prob8


def write_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 PNG (greyscale, or HxWx3 RGB) via a temporary file, so no half-written
    file is left behind."""
    ok, data = cv2.imencode(".png", array[..., ::-1] if array.ndim == 3 else array)  # OpenCV writes BGR
    if not ok:
        raise PipelineError(f"{path}: cannot encode PNG")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)


def predict_images(predictor: Predictor, images: list[Path], out: Path, threshold: float | None = None,
                   probability: bool = False, cfg: PredictCfg | None = None, with_overlay: bool = False
                   ) -> list[Path]:
    """Write a mask (and optionally a probability map and an overlay <name>_overlay.png: the
    predicted lines in orange, widened 1 px, over the grey dimmed photo; pipeline.overlay) per
    image; returns the masks written. `cfg` (the `predict` section) sets max_whole and the
    windows; None: its defaults."""
    cfg = cfg or PredictCfg()
    out.mkdir(parents=True, exist_ok=True)
    cut = predictor.threshold if threshold is None else threshold
    written = []
    for image in tqdm(images, desc="predict", unit="image", disable=len(images) < 2):
        rgb = read_rgb(image)
        mask, prob = photo_outputs(predictor, rgb, cfg, cut, probability)
        write_png(mask, out / f"{image.stem}.png")
        if prob is not None:
            write_png(prob, out / f"{image.stem}_prob.png")
        if with_overlay:
            write_png(overlay(rgb, mask > 0), out / f"{image.stem}_overlay.png")
        written.append(out / f"{image.stem}.png")
    return written
