"""Tiny generated input files shared by the source tests and the bad-input suite."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import rasterio
import scipy.io
from PIL import Image
from rasterio.transform import from_origin

CRS = "EPSG:32633"
TRANSFORM = from_origin(500_000.0, 6_000_000.0, 0.5, 0.5)


def rgb_array(h: int = 12, w: int = 8) -> np.ndarray:
    """A deterministic HxWx3 uint8 test pattern."""
    return (np.arange(h * w * 3).reshape(h, w, 3) * 7 % 256).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **options) -> bytes:
    """The array as an image file of `fmt` (JPEG, PNG, TIFF, ...), in memory."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **options)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write bytes, creating parent folders; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def savemat_bytes(content: dict) -> bytes:
    """A MATLAB v5 file holding `content`, in memory."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, content)
    return buf.getvalue()


def mat_bytes(boundaries: np.ndarray) -> bytes:
    """A BSDS500 ground-truth file: groundTruth{1}.Boundaries = boundaries."""
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Boundaries": boundaries}
    return savemat_bytes({"groundTruth": cell})


def line_mask(h: int = 12, w: int = 8) -> np.ndarray:
    """A 0/1 mask with one horizontal line."""
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2] = 1
    return mask


def labelme(shapes, image_path="a.png", image_data=None, h=40, w=60) -> dict:
    """A labelme 4.x document."""
    return {"version": "4.5.6", "shapes": shapes, "imagePath": image_path,
            "imageData": image_data, "imageHeight": h, "imageWidth": w}


def shape(label, points, kind="polygon") -> dict:
    """One labelme shape."""
    return {"label": label, "points": points, "shape_type": kind}


def write_raster(path: Path, data: np.ndarray, transform=TRANSFORM, crs=CRS, nodata=None) -> Path:
    """Write a (bands, H, W) array as a GeoTIFF."""
    bands, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=data.dtype,
        crs=crs, transform=transform, nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def write_folder(root: Path, n: int = 6, bad: str | None = None) -> Path:
    """A folder source of n small images with masks holding line and tower pixels;
    `bad` names an image whose file is cut in half."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        mask = np.zeros((40, 48), np.uint8)
        mask[10, :] = 1
        mask[20:25, 5:9] = 2
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    if bad:
        data = (root / "images" / f"{bad}.png").read_bytes()
        (root / "images" / f"{bad}.png").write_bytes(data[: len(data) // 2])
    return root


def refused(call, names: str | Path, problem: str, error: type[Exception] | None = None) -> str:
    """Run `call()`, expect the project's error (DataError unless `error` says otherwise) on
    ONE line that names the file `names` and matches the regex `problem`; return the message."""
    from pipeline.errors import DataError

    expected = error or DataError
    try:
        call()
    except expected as err:
        message = str(err)
    else:
        raise AssertionError(f"accepted, expected {expected.__name__} about {names}")
    name = names.name if isinstance(names, Path) else names
    assert "\n" not in message, message
    assert name in message, f"{name!r} not named in: {message}"
    assert re.search(problem, message), f"{problem!r} not in: {message}"
    return message
