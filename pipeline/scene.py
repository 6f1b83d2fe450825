"""Power-line prediction on a GeoTIFF scene of any size, written as georeferenced GeoTIFFs.

Windows. The model sees square windows of `tile` px (smaller only when the scene is),
stepping by tile - overlap. Window starts are multiples of 32 (tile and overlap are), and
the last window of a row or column ends at the scene size rounded up to 32 (zero-padded
in normalised space, as Predictor.probability pads an image), so every window shares the
network's downsampling grid and a pixel's prediction does not depend on which window it
came from, except for the context the window lacks.

Blending. Predictions near a window's edge lack context, so each window's probability is
weighted by a separable ramp, sin^2 over the `overlap` px next to each edge and 1 inside
(two overlapping windows then cross-fade with weights that sum to 1), floored at 1e-3 so
that a scene edge seen by one window only keeps a defined value. The sums of weight x
probability and of weight are accumulated and divided. blend=False uses flat weights
(plain averaging), which leaves seams; it exists to show that the tests can see them.

Memory. Windows are processed one row-strip at a time; the accumulators cover one strip
(tile x scene width, float32). When a strip is done, the rows the next strip cannot reach
are written out, and the buffers move down. Reads are per window, writes per finished
rows, and GDAL's block cache is capped (_GDAL_CACHE_MB), so memory does not grow with the
scene height and grows with its width only through the strip buffers (~40 MB at 8k wide).

Outputs (uint8, the input's CRS and transform, 256 px tiles, deflate):
  <stem>_mask.tif  0 background, 1 line, 255 nodata (probability >= threshold)
  <stem>_prob.tif  line probability x 254, rounded (0..254), 255 nodata; 255 is kept out
                   of the probability range so that nodata stays unambiguous
Pixels that are nodata in the scene (see pipeline.scene_reader, which also selects the
bands and scales them to 0..255) are 255 in both outputs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from tqdm import tqdm

from pipeline.config import PAD_MULTIPLE, PredictCfg
from pipeline.errors import PipelineError, one_line
from pipeline.scene_reader import RASTER_ERRORS, SceneReader, reading

NODATA = 255
PROB_SCALE = 254  # probability 1.0 -> 254; 255 is nodata
BLOCK = 256
_FLOOR = 1e-3
_GDAL_CACHE_MB = 64


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts (multiples of 32 when tile and stride are) covering [0, length); the
    last window ends at length rounded up to 32, so at most 31 px of padding are computed."""
    end = -(-length // PAD_MULTIPLE) * PAD_MULTIPLE
    if end <= tile:
        return [0]
    return [*range(0, end - tile, stride), end - tile]


def ramp(size: int, overlap: int, blend: bool = True) -> np.ndarray:
    """1-D blending weights of a window: sin^2 rising over `overlap` px from each edge."""
    if not blend or overlap == 0:
        return np.ones(size, np.float32)
    centre = np.arange(size) + 0.5
    edge_distance = np.minimum(centre, size - centre)
    weight = np.sin(np.pi / 2 * np.minimum(edge_distance / overlap, 1.0)) ** 2
    return np.maximum(weight, _FLOOR).astype(np.float32)


class _Strip:
    """Weighted sums of one row-strip of windows; finished rows leave from the top."""

    def __init__(self, height: int, width: int) -> None:
        self.acc = np.zeros((height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)
        self.valid = np.zeros((height, width), bool)

    def add(self, x0: int, prob: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> None:
        """Accumulate one window (full window size) starting at column x0 of the strip."""
        cols = slice(x0, x0 + prob.shape[1])
        self.acc[:, cols] += prob * weight
        self.weight[:, cols] += weight
        self.valid[: valid.shape[0], x0: x0 + valid.shape[1]] |= valid

    def pop(self, rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Probability and validity of the top `rows` (first `width` columns); shift up."""
        weight = self.weight[:rows, :width]
        prob = np.divide(self.acc[:rows, :width], weight, out=np.zeros_like(weight), where=weight > 0)
        valid = self.valid[:rows, :width].copy()
        for buffer in (self.acc, self.weight, self.valid):
            buffer[: len(buffer) - rows] = buffer[rows:]  # numpy copies overlapping slices safely
            buffer[len(buffer) - rows:] = 0
        return prob, valid


class _Writers:
    """The output GeoTIFFs (temporary paths), written a band of finished rows at a time."""

    def __init__(self, src: Any, paths: dict[str, Path]) -> None:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1, "dtype": "uint8",
                   "crs": src.crs, "transform": src.transform, "nodata": NODATA, "tiled": True,
                   "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
        self.files = {}
        for kind, path in paths.items():
            try:
                with warnings.catch_warnings():  # the scene's own (lack of) georeferencing is kept as it is
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    self.files[kind] = rasterio.open(path, "w", **profile)
            except RASTER_ERRORS as err:
                self.close()
                raise PipelineError(f"{path}: cannot write GeoTIFF ({one_line(err)})") from None

    def write(self, y0: int, prob: np.ndarray, valid: np.ndarray, cut: float) -> None:
        """Write rows y0.. of the mask and (if open) the probability raster."""
        window = Window(0, y0, prob.shape[1], prob.shape[0])
        arrays = {"mask": (prob >= cut).astype(np.uint8),
                  "probability": np.rint(prob * PROB_SCALE).astype(np.uint8)}
        for kind, dst in self.files.items():
            try:
                dst.write(np.where(valid, arrays[kind], NODATA).astype(np.uint8), 1, window=window)
            except RASTER_ERRORS as err:
                raise PipelineError(f"{dst.name}: cannot write GeoTIFF ({one_line(err)})") from None

    def close(self) -> None:
        """Close every file (flushes the last blocks)."""
        for dst in self.files.values():
            try:
                dst.close()
            except RASTER_ERRORS as err:
                raise PipelineError(f"{dst.name}: cannot write GeoTIFF ({one_line(err)})") from None


def _predict_windows(predictor: Any, reader: SceneReader, writers: _Writers, cfg: PredictCfg, cut: float,
                     progress: bool) -> None:
    """Run the model over the scene strip by strip and write each strip's finished rows."""
    height, width = reader.src.height, reader.src.width
    th = min(cfg.tile, -(-height // PAD_MULTIPLE) * PAD_MULTIPLE)
    tw = min(cfg.tile, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE)
    stride = cfg.tile - cfg.overlap
    ys, xs = window_starts(height, th, stride), window_starts(width, tw, stride)
    weight = np.outer(ramp(th, cfg.overlap, cfg.blend), ramp(tw, cfg.overlap, cfg.blend))
    strip = _Strip(th, xs[-1] + tw)
    with tqdm(total=len(ys) * len(xs), desc=reader.path.name, unit="window", disable=not progress) as bar:
        for i, y0 in enumerate(ys):
            for start in range(0, len(xs), cfg.batch):
                chunk = xs[start: start + cfg.batch]
                _predict_batch(predictor, reader, strip, y0, chunk, weight)
                bar.update(len(chunk))
            rows = (ys[i + 1] if i + 1 < len(ys) else height) - y0  # rows no later strip reaches
            prob, valid = strip.pop(rows, width)
            writers.write(y0, prob, valid, cut)


def _predict_batch(predictor: Any, reader: SceneReader, strip: _Strip, y0: int, xs: list[int],
                   weight: np.ndarray) -> None:
    """Read the windows at (y0, x) for x in xs, run them as one batch, add them to the strip."""
    th, tw = weight.shape
    batch = np.zeros((len(xs), 3, th, tw), np.float32)  # 0 = padding, as in Predictor.probability
    valids = []
    for k, x0 in enumerate(xs):
        rgb, valid = reader.read(y0, x0, th, tw)
        batch[k, :, : rgb.shape[0], : rgb.shape[1]] = predictor.normalise(rgb)
        valids.append(valid)
    probs = _line_probability(predictor.logits(batch))
    for x0, prob, valid in zip(xs, probs, valids, strict=True):
        strip.add(x0, prob, weight, valid)


def _line_probability(logits: np.ndarray) -> np.ndarray:
    from pipeline.predict import line_probability  # predict imports this module lazily

    return line_probability(logits)


def output_paths(scene: Path, out: Path, probability: bool, vector: bool) -> dict[str, Path]:
    """Where predict_scene writes each output of `scene`."""
    paths = {"mask": out / f"{scene.stem}_mask.tif"}
    if probability:
        paths["probability"] = out / f"{scene.stem}_prob.tif"
    if vector:
        paths["lines"] = out / f"{scene.stem}_lines.geojson"
    return paths


def predict_scene(predictor: Any, scene: Path, out: Path, cfg: PredictCfg, threshold: float | None = None,
                  probability: bool = False, vector: bool = False, progress: bool = True) -> dict[str, Path]:
    """Write the mask (and optionally probability and GeoJSON lines) of a GeoTIFF scene.

    `predictor` is a pipeline.predict.Predictor. Everything is written to hidden temporary
    files in `out` and renamed at the end, so a failure leaves no half-written output.
    Returns the written paths by kind ("mask", "probability", "lines")."""
    out.mkdir(parents=True, exist_ok=True)
    targets = output_paths(scene, out, probability, vector)
    tmps = {kind: path.with_name(f".{path.name}.tmp") for kind, path in targets.items()}
    cut = predictor.threshold if threshold is None else threshold
    try:
        with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB), reading(scene), rasterio.open(scene) as src:
            reader = SceneReader(src, scene, cfg)
            writers = _Writers(src, {k: p for k, p in tmps.items() if k != "lines"})
            try:
                _predict_windows(predictor, reader, writers, cfg, cut, progress)
            finally:
                writers.close()
        if vector:
            from pipeline.vectorise import vectorise  # scikit-image and shapely only when asked for

            vectorise(tmps["mask"], tmps["lines"], cfg.simplify, cfg.min_length, name=targets["lines"].stem)
        for kind, tmp in tmps.items():
            os.replace(tmp, targets[kind])
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    return targets
