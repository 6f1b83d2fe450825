"""Reading GeoTIFF scenes for prediction: which files are scenes, bands, scaling, nodata.

A window is returned as uint8 RGB plus a validity mask. Nodata: a pixel where any used
band is masked (nodata value, internal mask, alpha band) or not finite; its pixels are
set to 0, as the geotiff training source does.

Radiometry (PredictCfg.scaling): auto keeps uint8 bands and stretches other dtypes per
band from their percentiles (computed once per scene by the geotiff training source's
band_percentiles, on valid pixels of a decimated read, and applied by its stretch_to_uint8);
percentile does so for uint8 too; fixed maps value_range to 0..255 for every band. A
single band is replicated to RGB, as read_rgb does for grey images.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError  # GDAL errors not wrapped as RasterioError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from pipeline.config import PredictCfg
from pipeline.data.sources.geotiff import band_percentiles, stretch_to_uint8
from pipeline.errors import DataError, PipelineError, one_line

SCENE_SUFFIXES = (".tif", ".tiff")
RASTER_ERRORS = (RasterioError, CPLE_BaseError, OSError)


def is_scene(path: Path) -> bool:
    """True for a .tif/.tiff that rasterio reads and that has a CRS or a geotransform."""
    if path.suffix.lower() not in SCENE_SUFFIXES:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.crs is not None or not src.transform.is_identity
    except RASTER_ERRORS:
        return False  # not a raster GDAL reads: the image route reports it


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """GDAL/IO failures while reading `path` become one-line DataErrors naming it."""
    try:
        yield
    except PipelineError:
        raise
    except RASTER_ERRORS as err:
        while err.__cause__ is not None:  # rasterio's "Read failed. See previous exception" hides GDAL's reason
            err = err.__cause__
        raise DataError(path, f"cannot read raster ({one_line(err)})") from None


class SceneReader:
    """Windows of the chosen bands as uint8 RGB plus a validity mask."""

    def __init__(self, src: Any, path: Path, cfg: PredictCfg) -> None:
        self.src, self.path = src, path
        bands = cfg.bands or ([1, 2, 3] if src.count >= 3 else [1])
        if max(bands) > src.count:
            raise DataError(path, f"band {max(bands)} requested but the scene has {src.count} band(s)")
        self.bands = bands
        dtypes = {src.dtypes[b - 1] for b in bands}
        self.stretch = None  # (bands, 2) low/high per band -> 0..255; None keeps uint8 as is
        if cfg.scaling == "fixed":
            self.stretch = np.array([cfg.value_range] * len(bands), np.float64)
        elif cfg.scaling == "percentile" or dtypes != {"uint8"}:
            self.stretch = band_percentiles(src, bands, cfg.percentiles, path)

    def read(self, y0: int, x0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The window clipped to the scene: (h, w, 3) uint8 RGB and (h, w) validity."""
        window = Window(x0, y0, min(width, self.src.width - x0), min(height, self.src.height - y0))
        raw = self.src.read(self.bands, window=window)
        valid = (self.src.read_masks(self.bands, window=window) > 0).all(axis=0)
        if raw.dtype.kind == "f":
            valid &= np.isfinite(raw).all(axis=0)
        image = raw if self.stretch is None else stretch_to_uint8(raw, self.stretch)
        image = np.where(valid, image, 0).astype(np.uint8)
        if len(self.bands) == 1:  # grey, replicated as read_rgb does for images
            image = np.repeat(image, 3, axis=0)
        return image.transpose(1, 2, 0), valid
