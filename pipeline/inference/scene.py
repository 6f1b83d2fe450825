"""Power-line prediction on a GeoTIFF scene of any size, written as georeferenced GeoTIFFs.

Windows, blending and memory: see pipeline.inference.windows (overlapping windows on the
network's 32 px grid, cross-faded with a smooth ramp, one row-strip of buffers at a time).
Reads are per window, writes per finished rows, and GDAL's block cache is capped
(_GDAL_CACHE_MB), so memory does not grow with the scene height and grows with its width
only through the strip buffers.

Outputs (uint8, the input's CRS and transform, 256 px tiles, deflate):
  <stem>_mask.tif  0 background, 1 line, 255 nodata (probability >= threshold)
  <stem>_prob.tif  line probability x 254, rounded (0..254), 255 nodata; 255 is kept out
                   of the probability range so that nodata stays unambiguous
Pixels that are nodata in the scene (see pipeline.inference.scene_reader, which also selects
the bands and scales them to 0..255) are 255 in both outputs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from pipeline.config import PredictCfg
from pipeline.errors import PipelineError, one_line
from pipeline.inference.scene_reader import RASTER_ERRORS, SceneReader, reading
from pipeline.inference.windows import blended_rows

if TYPE_CHECKING:
    from pipeline.inference.predictor import Predictor

NODATA = 255
PROB_SCALE = 254  # probability 1.0 -> 254; 255 is nodata
BLOCK = 256
_GDAL_CACHE_MB = 64


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


def output_paths(scene: Path, out: Path, probability: bool, vector: bool) -> dict[str, Path]:
    """Where predict_scene writes each output of `scene`."""
    paths = {"mask": out / f"{scene.stem}_mask.tif"}
    if probability:
        paths["probability"] = out / f"{scene.stem}_prob.tif"
    if vector:
        paths["lines"] = out / f"{scene.stem}_lines.geojson"
    return paths


def predict_scene(predictor: Predictor, scene: Path, out: Path, cfg: PredictCfg, threshold: float | None = None,
                  probability: bool = False, vector: bool = False, progress: bool = True) -> dict[str, Path]:
    """Write the mask (and optionally probability and GeoJSON lines) of a GeoTIFF scene.

    Everything is written to hidden temporary files in `out` and renamed at the end, so a
    failure leaves no half-written output.
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
                for y0, prob, valid in blended_rows(predictor, reader.read, src.height, src.width, cfg, scene.name,
                                                    progress):
                    writers.write(y0, prob, valid, cut)
            finally:
                writers.close()
        if vector:
            from pipeline.inference.vectorise import vectorise  # scikit-image and shapely only when asked for

            vectorise(tmps["mask"], tmps["lines"], cfg.simplify, cfg.min_length, name=targets["lines"].stem)
        for kind, tmp in tmps.items():
            os.replace(tmp, targets[kind])
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    return targets
