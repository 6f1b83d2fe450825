"""A line mask GeoTIFF -> GeoJSON LineStrings in the raster's CRS, tile by tile.

Steps: the mask (value 1 = line; 0 and nodata are not) is read in tiles of `tile` px with
a `margin` of context on each side, skeletonised (scikit-image), and the skeleton traced
into pixel-centre polylines. Each polyline is clipped to its tile's core, so every piece
of the scene is kept exactly once; the cuts fall on integer pixel edges between pixel
centres, so the two halves of a cut line end on the very same point and are merged back
with shapely's line_merge. The merged lines are simplified (Douglas-Peucker, in px),
those shorter than `min_length` px dropped, and mapped to the raster's CRS by its
transform. Each feature gets `length` in the CRS's units (metres for a projected CRS;
degrees for a geographic one, where it is not a true length).

Memory: one tile of the mask at a time, plus the traced lines themselves (which grow with
the amount of line in the scene, not with its area). The skeleton of an object thicker
than about the margin may differ slightly at a tile border.

Tracing: pixels are 8-connected, but a diagonal step is only taken when neither pixel
of the corner it cuts is on the skeleton, so staircase corners do not look like
junctions. Pixels with other than two neighbours are nodes (ends, junctions); a polyline
runs from node to node, and closed loops without nodes are traced on their own. (skan
traces skeletons too, but needs numba and pandas, and JIT-compiles on first use: too
much for these 60 lines.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window
from skimage.morphology import skeletonize

LINE = 1
_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def _neighbours(skel: np.ndarray, r: int, c: int) -> list[tuple[int, int]]:
    """Graph neighbours of (r, c) in a zero-bordered skeleton (see the module's tracing rule)."""
    found = []
    for dr, dc in _STEPS:
        if skel[r + dr, c + dc] and (dr == 0 or dc == 0 or not (skel[r + dr, c] or skel[r, c + dc])):
            found.append((r + dr, c + dc))
    return found


def _degree(skel: np.ndarray) -> np.ndarray:
    """Number of graph neighbours of every pixel of a zero-bordered boolean skeleton."""
    s = skel.astype(np.int8)
    h, w = s.shape

    def at(dr: int, dc: int) -> np.ndarray:  # s shifted so that [r, c] holds s[r + dr, c + dc]
        out = np.zeros_like(s)
        out[max(0, -dr): h - max(0, dr), max(0, -dc): w - max(0, dc)] = \
            s[max(0, dr): h - max(0, -dr), max(0, dc): w - max(0, -dc)]
        return out

    degree = at(-1, 0) + at(1, 0) + at(0, -1) + at(0, 1)
    for dr, dc in _STEPS[4:]:
        degree += at(dr, dc) & (1 - at(dr, 0)) & (1 - at(0, dc))
    return np.where(skel, degree, 0)


def trace(skel: np.ndarray) -> list[np.ndarray]:
    """Polylines of a boolean skeleton as (n, 2) arrays of (row, col), n >= 2."""
    skel = np.pad(skel.astype(bool), 1)  # a zero border: no bounds checks in the walks
    degree = _degree(skel)
    seen = np.zeros_like(skel)  # pixels inside a traced polyline (degree 2)
    lines = []
    for r, c in zip(*np.nonzero(skel & (degree != 2)), strict=True):
        for step in _neighbours(skel, r, c):
            if degree[step] != 2:  # two adjacent nodes: trace their link once
                if (r, c) < step:
                    lines.append([(r, c), step])
            elif not seen[step]:
                lines.append(_walk(skel, degree, seen, [(r, c), step]))
    for r, c in zip(*np.nonzero(skel & (degree == 2) & ~seen), strict=True):
        if not seen[r, c]:  # a closed loop without nodes
            seen[r, c] = True
            line = _walk(skel, degree, seen, [(r, c), _neighbours(skel, r, c)[0]])
            lines.append(line + [line[0]] if line[-1] != (r, c) else line)
    return [np.asarray(line) - 1 for line in lines]


def _walk(skel: np.ndarray, degree: np.ndarray, seen: np.ndarray, path: list) -> list:
    """Extend `path` through degree-2 pixels until a node or an already traced pixel."""
    while degree[path[-1]] == 2 and not seen[path[-1]]:
        seen[path[-1]] = True
        ahead = [p for p in _neighbours(skel, *path[-1]) if p != path[-2]]
        if not ahead:
            break
        path.append(ahead[0])
    return [(int(r), int(c)) for r, c in path]


def _tile_pieces(mask: np.ndarray, top: int, left: int, core: tuple[int, int, int, int]) -> list:
    """Polylines of one tile's skeleton in scene pixel coordinates (x, y of pixel centres),
    clipped to the core box (xmin, ymin, xmax, ymax)."""
    pieces = []
    for line in trace(skeletonize(mask == LINE)):
        xy = np.column_stack([line[:, 1] + left + 0.5, line[:, 0] + top + 0.5])
        clipped = shapely.clip_by_rect(shapely.LineString(xy), *core)
        pieces.extend(part for part in getattr(clipped, "geoms", [clipped]) if part.length > 0)
    return pieces


def trace_raster(src: Any, tile: int = 1024, margin: int = 64) -> list[shapely.LineString]:
    """Merged skeleton polylines of an open mask raster, in pixel coordinates."""
    pieces = []
    for top in range(0, src.height, tile):
        for left in range(0, src.width, tile):
            y0, x0 = max(0, top - margin), max(0, left - margin)
            window = Window(x0, y0, min(src.width, left + tile + margin) - x0,
                            min(src.height, top + tile + margin) - y0)
            mask = src.read(1, window=window)
            core = (left, top, min(left + tile, src.width), min(top + tile, src.height))
            pieces += _tile_pieces(mask, y0, x0, core)
    if not pieces:
        return []
    merged = shapely.line_merge(shapely.MultiLineString(pieces))
    return list(getattr(merged, "geoms", [merged]))


def _crs_member(crs: Any) -> dict[str, Any] | None:
    """The (pre-RFC 7946) GeoJSON `crs` member GDAL and QGIS read: EPSG URN, else WKT."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def vectorise(mask_path: Path, out: Path, simplify: float = 1.0, min_length: float = 10.0,
              tile: int = 1024, margin: int = 64, name: str | None = None) -> int:
    """Write the lines of a mask GeoTIFF as a GeoJSON FeatureCollection of LineStrings in
    its CRS (`length` property in CRS units); returns the number of lines written."""
    with rasterio.open(mask_path) as src:
        lines = trace_raster(src, tile, margin)
        transform, crs = src.transform, src.crs
    lines = [line.simplify(simplify) if simplify else line for line in lines if line.length >= min_length]
    affine = np.array(transform[:6], np.float64).reshape(2, 3)
    features = []
    for i, line in enumerate(lines):
        xy = shapely.get_coordinates(line) @ affine[:, :2].T + affine[:, 2]
        geometry = shapely.LineString(xy)
        features.append({"type": "Feature", "properties": {"id": i, "length": geometry.length},
                         "geometry": {"type": "LineString", "coordinates": xy.tolist()}})
    collection = {"type": "FeatureCollection", "name": name or Path(out).stem, "crs": _crs_member(crs),
                  "features": features}
    if collection["crs"] is None:
        del collection["crs"]
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(collection))
    os.replace(tmp, out)
    return len(features)
