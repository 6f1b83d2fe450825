"""One GeoTIFF scene and its label raster, cut into overlapping tiles grouped by region.

root/cfg.image is a scene of 3 or more bands (bands 1-3 are used as RGB); root/cfg.mask is a
single-band label raster (0 background, 1 line, 2 tower, 255 ignore) on exactly the same
pixel grid. Every tile is read through a window, so a big scene is never held in memory.

Tiling rule. The scene is divided into square regions of region_size px; the last row and
column of regions are clipped to the scene. Tiles of tile_size px, stepping by
tile_size - overlap, are laid out inside each region only, and the last tile of a row or
column is shifted back to end on the region border. A region narrower or shorter than
tile_size (a thin strip at the scene edge) yields no tile, so every tile has the full size.
Since tiles never cross a region border, group(key) = region id lets the split code put
whole regions into one split, and overlapping tiles can never straddle train/val/test.

Radiometry. uint8 bands are used as is. Any other dtype (16-bit, float) is stretched
linearly per band from its 2nd..98th percentile to 0..255. The percentiles are computed
once per scene, over valid pixels of a nearest-neighbour decimated read of at most
_STRETCH_SAMPLE px per side, so all tiles share one stretch and memory stays bounded.

Nodata. A pixel is nodata if any of bands 1-3 is masked by the scene (nodata value, internal
mask or alpha band) or not finite. It becomes 0 in the image and IGNORE_INDEX in the mask.
The mask raster's own nodata value is deliberately not applied: 255 already means ignore,
and label rasters burned with nodata=0 would otherwise turn all background into ignore.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError  # GDAL errors not wrapped as RasterioError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from pipeline.config import GeotiffCfg
from pipeline.data.sources.base import (
    ALLOWED_LABELS,
    IGNORE_INDEX,
    Sample,
    validate_sample,
)
from pipeline.errors import DataError, PipelineError, one_line

RGB = [1, 2, 3]
_STRETCH_SAMPLE = 1024  # px per side of the decimated read behind the percentile stretch


@contextmanager
def _open(path: Path) -> Iterator[rasterio.DatasetReader]:
    """Open a raster; any GDAL/IO failure, also during reads inside the block, is a DataError."""
    try:
        with rasterio.open(path) as src:
            yield src
    except (RasterioError, CPLE_BaseError, OSError) as err:
        detail: BaseException = err
        while "previous exception" in str(detail) and detail.__cause__ is not None:
            detail = detail.__cause__  # rasterio: "Read failed. See previous exception for details."
        raise DataError(path, f"cannot read raster ({one_line(detail)})") from None


def _offsets(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts covering [0, length); the last one is shifted back to end at `length`."""
    starts = list(range(0, length - tile + 1, stride))
    if starts and starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _crs_string(crs: Any) -> str | None:
    """'EPSG:nnnn' when the CRS has an EPSG code, else its WKT (None without a CRS)."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _grid_difference(img: Any, msk: Any) -> str | None:
    """Describe how the mask grid differs from the scene grid, or None if they match."""
    if (msk.width, msk.height) != (img.width, img.height):
        return f"size {msk.width}x{msk.height} != scene size {img.width}x{img.height}"
    # a thousandth of a pixel absorbs float noise from tools that rewrite the transform
    a, b, _, d, e, _ = img.transform[:6]
    tol = 1e-3 * max(abs(a), abs(b), abs(d), abs(e))
    if not np.allclose(msk.transform[:6], img.transform[:6], rtol=0, atol=tol):
        return f"transform {tuple(msk.transform[:6])} != scene {tuple(img.transform[:6])}"
    if msk.crs != img.crs:
        return f"CRS {_crs_string(msk.crs)} != scene CRS {_crs_string(img.crs)}"
    return None


def band_percentiles(src: Any, bands: list[int], percentiles: tuple[float, float], path: Path) -> np.ndarray:
    """(bands, 2): per-band low/high percentiles of the valid pixels of the open raster
    `src`, from a nearest-neighbour read decimated to at most _STRETCH_SAMPLE px per side
    (one stretch for the whole scene, in bounded memory)."""
    factor = max(1, math.ceil(max(src.width, src.height) / _STRETCH_SAMPLE))
    shape = (len(bands), math.ceil(src.height / factor), math.ceil(src.width / factor))
    data = src.read(bands, out_shape=shape, resampling=Resampling.nearest).astype(np.float64)
    valid = (src.read_masks(bands, out_shape=shape, resampling=Resampling.nearest) > 0).all(axis=0)
    valid &= np.isfinite(data).all(axis=0)
    if not valid.any():
        raise DataError(path, "scene has no valid (non-nodata) pixel")
    return np.array([np.percentile(band[valid], percentiles) for band in data])


def stretch_to_uint8(raw: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """(bands, h, w) -> uint8: each band's low..high (`stretch` rows) linearly to 0..255."""
    low, high = stretch[:, :1, None], stretch[:, 1:, None]
    span = np.where(high > low, high - low, np.inf)  # a flat band maps to 0, not a division by zero
    with np.errstate(invalid="ignore"):  # NaN pixels are invalid: the callers zero them
        scaled = (raw.astype(np.float64) - low) / span * 255.0
    return np.nan_to_num(np.clip(np.rint(scaled), 0, 255)).astype(np.uint8)


class GeotiffSource:
    """Tiles of one GeoTIFF scene; keys are '<region>_<row>_<col>', grouped by region."""

    def __init__(self, root: Path, cfg: GeotiffCfg) -> None:
        """Check both rasters' headers and lay out the tiles; no pixel data is read here."""
        # config mistakes, not bad data: PipelineError names the params keys
        if cfg.overlap >= cfg.tile_size:
            raise PipelineError(
                f"geotiff.overlap {cfg.overlap} must be < tile_size {cfg.tile_size}"
            )
        if cfg.tile_size > cfg.region_size:
            raise PipelineError(
                f"geotiff.tile_size {cfg.tile_size} must be <= region_size {cfg.region_size}"
            )
        self.image_path = Path(root) / cfg.image
        self.mask_path = Path(root) / cfg.mask
        self.cfg = cfg
        with _open(self.image_path) as img, _open(self.mask_path) as msk:
            if img.count < 3:
                raise DataError(self.image_path, f"need at least 3 bands (RGB), got {img.count}")
            if msk.count != 1:
                raise DataError(self.mask_path, f"mask must have 1 band, got {msk.count}")
            problem = _grid_difference(img, msk)
            if problem:
                raise DataError(self.mask_path, f"not on the scene's grid: {problem}")
            self._transform = img.transform
            self._crs = _crs_string(img.crs)
            self._needs_stretch = any(dt != "uint8" for dt in img.dtypes[:3])
            width, height = img.width, img.height
        self._tiles = self._layout(width, height)
        if not self._tiles:
            raise DataError(
                self.image_path, f"scene {width}x{height} yields no {cfg.tile_size}px tile "
                f"(region parts smaller than a tile are skipped)"
            )
        self._stretch: np.ndarray | None = None  # (3, 2) lo/hi per band, computed on first load

    def _layout(self, width: int, height: int) -> dict[str, tuple[str, Window]]:
        """key -> (region id, window) for every tile, following the module's tiling rule."""
        size, tile = self.cfg.region_size, self.cfg.tile_size
        stride = tile - self.cfg.overlap
        n_rows, n_cols = math.ceil(height / size), math.ceil(width / size)
        # zero padding makes the lexicographic key order equal the row-major order
        rpad = len(str(max(n_rows, n_cols) - 1))
        tpad = len(str(len(_offsets(size, tile, stride)) - 1))
        tiles = {}
        for ri in range(n_rows):
            for ci in range(n_cols):
                y0, x0 = ri * size, ci * size
                region = f"r{ri:0{rpad}d}c{ci:0{rpad}d}"
                ys = _offsets(min(size, height - y0), tile, stride)
                xs = _offsets(min(size, width - x0), tile, stride)
                for ti, dy in enumerate(ys):
                    for tj, dx in enumerate(xs):
                        key = f"{region}_{ti:0{tpad}d}_{tj:0{tpad}d}"
                        tiles[key] = (region, Window(x0 + dx, y0 + dy, tile, tile))
        return tiles

    def keys(self) -> list[str]:
        """All tile keys, sorted (region-major, then tile row, then tile column)."""
        return sorted(self._tiles)

    def group(self, key: str) -> str:
        """The region id of a tile: overlapping tiles share it, so they share a split."""
        return self._tiles[key][0]

    def fixed_split(self) -> dict[str, str] | None:
        """A single scene dictates no split; regions are assigned by the split code."""
        return None

    def load(self, key: str) -> Sample:
        """Read one tile through its window; raise DataError naming the file on failure."""
        region, window = self._tiles[key]
        with _open(self.image_path) as img:
            raw = img.read(RGB, window=window)
            valid = (img.read_masks(RGB, window=window) > 0).all(axis=0)
            if self._needs_stretch and self._stretch is None:
                self._stretch = band_percentiles(img, RGB, (2, 98), self.image_path)
        with _open(self.mask_path) as msk:
            labels = msk.read(1, window=window)
        if raw.dtype.kind == "f":
            valid &= np.isfinite(raw).all(axis=0)
        image = raw.copy() if self._stretch is None else stretch_to_uint8(raw, self._stretch)
        image[:, ~valid] = 0
        mask = self._labels_to_uint8(labels, valid)
        meta = {
            "source": str(self.image_path),
            "region": region,
            "window": tuple(int(v) for v in window.flatten()),  # col_off, row_off, width, height
            "transform": tuple(float(v) for v in window_transform(window, self._transform)[:6]),
            "crs": self._crs,
            "stretch": None if self._stretch is None else self._stretch.tolist(),
        }
        hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
        return validate_sample(Sample(name=key, image=hwc, mask=mask, meta=meta), self.image_path)

    def _labels_to_uint8(self, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Class ids as uint8 with IGNORE_INDEX on scene nodata. Values outside the classes
        are refused (naming the mask file) before a cast could wrap them into valid ids;
        under scene nodata any value is tolerated, since it is overwritten anyway."""
        bad = sorted(set(np.unique(labels[valid]).tolist()) - ALLOWED_LABELS)
        if bad:
            raise DataError(self.mask_path, f"values {bad[:5]} outside {sorted(ALLOWED_LABELS)}")
        mask = labels.astype(np.uint8)
        mask[~valid] = IGNORE_INDEX
        return mask
