"""Careful readers for image, label-PNG and BSDS .mat files.

Every failure leaves as DataError(path, "<one-line problem>"); nothing else escapes for
bad data. EXIF orientation is deliberately NOT applied: annotations are made on the
stored pixels and masks must stay pixel-aligned with their images, so rotating one of
them would silently misalign the pair.
"""

from __future__ import annotations

import io
import itertools
import math
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from pipeline.errors import DataError, one_line

# Pillow and scipy raise a zoo of exception types for corrupt input (OSError for
# truncation, SyntaxError/struct.error from header parsers, EOFError, ...). All of them
# mean "this file is unusable", so they are turned into DataError at the reader boundary.
# MemoryError: a corrupt header can claim an enormous array. NameError (UnboundLocalError)
# and AttributeError: scipy's MAT parser hits its own bugs on some corrupt files.
_DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError,
    KeyError, TypeError, ZeroDivisionError, OverflowError, NotImplementedError,
    MemoryError, NameError, AttributeError, Image.DecompressionBombError,
    scipy.io.matlab.MatReadError,
)
_MAT_BUDGET = 256 * 2**20  # bytes, file and inflated data: a 16k x 16k mask still fits
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_TIFF_HINT = ("corrupt or truncated TIFF, or a kind Pillow cannot read (16-bit or float colour, 5+ bands): "
              "the geotiff source reads those")


def read_rgb(path: Path | str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB.

    Grayscale is replicated to 3 channels, alpha is dropped (RGBA, LA; also a 4-band
    8-bit TIFF, whose 4th band Pillow reads as alpha), palette and CMYK/YCbCr are
    converted to RGB, 16-bit grayscale is scaled to 8 bits by /257 (rounded). 16-bit RGB
    PNGs are reduced by Pillow itself to their high byte (/256, at most one level away
    from /257). Refused with a DataError: float images, 16-bit or float colour TIFFs and
    TIFFs of 5+ bands (Pillow cannot read them; the geotiff source can). Multi-frame
    files yield their first frame.
    """
    try:
        with Path(path).open("rb") as f:
            return _decode_rgb(f, path)
    except (OSError, ValueError) as err:  # open() failed: missing, permissions, NUL in name
        raise DataError(path, f"cannot read image ({one_line(err)})") from None


def decode_rgb(data: bytes, origin: Path | str) -> np.ndarray:
    """Like read_rgb, for in-memory image bytes; errors name `origin`."""
    return _decode_rgb(io.BytesIO(data), origin)


def _decode_rgb(f: BinaryIO, origin: Path | str) -> np.ndarray:
    try:
        # Pillow warns (UserWarning) about corrupt EXIF/TIFF tags it then skips: noise
        # beside the one-line error or the good pixels; DecompressionBombWarning still shows
        with warnings.catch_warnings(action="ignore", category=UserWarning), Image.open(f) as img:
            img.load()  # decode now, so truncated files fail here and not later
            # no ImageOps.exif_transpose: masks are drawn on the stored pixels (see top)
            return _to_rgb(img, origin)
    except DataError:
        raise
    except UnidentifiedImageError:  # its message only repeats the file object's repr
        f.seek(0)
        tiff = f.read(4) in (b"II*\0", b"MM\0*")
        raise DataError(origin, f"cannot decode image ({_TIFF_HINT if tiff else 'unknown format or corrupt header'})") \
            from None
    except _DECODE_ERRORS as err:
        raise DataError(origin, f"cannot decode image ({one_line(err)})") from None


def _to_rgb(img: Image.Image, origin: Path | str) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        gray = _sixteen_bit(img, origin)
        scaled = (gray.astype(np.uint32) + 128) // 257  # round(v / 257): 65535 -> 255
        return np.repeat(scaled.astype(np.uint8)[:, :, None], 3, axis=2)
    if mode in ("1", "L", "LA", "La"):
        gray = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("P", "PA"):
        # via RGBA: Pillow warns when palette transparency is converted straight to RGB
        return np.ascontiguousarray(np.asarray(img.convert("RGBA"))[:, :, :3])
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    hint = "; float images are not read here: use the geotiff source" if mode == "F" else ""
    raise DataError(origin, f"unsupported image mode {mode!r}{hint}")


def _sixteen_bit(img: Image.Image, origin: Path | str) -> np.ndarray:
    """Pixel values of a 16-bit (or 'I') single-channel image, checked to fit 16 bits."""
    values = np.asarray(img).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(origin, f"{img.mode} image values outside 0..65535")
    return values


def read_label_png(path: Path | str) -> np.ndarray:
    """Read a label PNG as HxW uint8 raw values (class ids, or raw values to be mapped).

    Accepted: 8-bit grayscale; palette PNGs (the palette *indices* are the labels, as in
    VOC-style masks); 1-bit (0/1); 16-bit grayscale if every value is <= 255; RGB(A)
    only when R == G == B (a grayscale mask saved as colour). Alpha is ignored.
    """
    try:
        with Path(path).open("rb") as f, Image.open(f) as img:
            img.load()
            if img.format != "PNG":
                # a lossy JPEG mask would smear label values along every edge
                raise DataError(path, f"label file must be PNG, got {img.format}")
            return _to_labels(img, path)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(path, "cannot decode label PNG (unknown format or corrupt header)") from None
    except _DECODE_ERRORS as err:
        raise DataError(path, f"cannot decode label PNG ({one_line(err)})") from None


def _to_labels(img: Image.Image, path: Path | str) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "P"):
        return np.asarray(img, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(img).astype(np.uint8)  # bool -> 0/1, the stored bit values
    if mode in ("LA", "PA"):
        return np.asarray(img)[:, :, 0].copy()
    if mode in _SIXTEEN_BIT:
        values = _sixteen_bit(img, path)
        if values.size and values.max() > 255:
            raise DataError(path, f"16-bit label values up to {values.max()} exceed 255")
        return values.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[:, :, :3]
        if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()):
            raise DataError(path, "colour label PNG (R, G, B differ); save class ids as "
                            "a single-channel PNG")
        return rgb[:, :, 0].copy()
    raise DataError(path, f"unsupported label PNG mode {mode!r}")


def read_mat_boundaries(path: Path | str) -> np.ndarray:
    """Read a BSDS500-style .mat: groundTruth{1}.Boundaries as HxW uint8 in {0, 1}.

    Only the first annotator is used (PLD-UAV has exactly one).
    """
    try:
        if Path(path).stat().st_size > _MAT_BUDGET:
            raise ValueError(f"file larger than {_MAT_BUDGET >> 20} MiB")
        data = Path(path).read_bytes()
        _MatSizeCheck(data).run()
        mat = scipy.io.loadmat(io.BytesIO(data))
    except _DECODE_ERRORS as err:
        raise DataError(path, f"not a readable MAT file ({one_line(err)})") from None
    try:
        boundaries = mat["groundTruth"][0, 0]["Boundaries"][0, 0]
    except (KeyError, IndexError, ValueError, TypeError):
        raise DataError(path, "no groundTruth{1}.Boundaries in MAT file") from None
    if not isinstance(boundaries, np.ndarray) or boundaries.ndim != 2 or boundaries.size == 0:
        shape = getattr(boundaries, "shape", None)
        raise DataError(path, f"Boundaries must be a non-empty 2-D array, got shape {shape}")
    if boundaries.dtype.kind not in "biuf":
        raise DataError(path, f"Boundaries must be numeric, got dtype {boundaries.dtype}")
    if not np.isin(boundaries, (0, 1)).all():
        bad = np.unique(boundaries[~np.isin(boundaries, (0, 1))])[:5].tolist()
        raise DataError(path, f"Boundaries values {bad} are not 0/1")
    return boundaries.astype(np.uint8)


class _MatSizeCheck:
    """Refuse MAT v5 arrays that declare more elements than their bytes could hold.

    scipy allocates (and fills) an array from its declared dims before reading any data,
    so one corrupt dims field makes it touch gigabytes; this walk over the element tags
    is cheap. Decompressed data is capped by a shared budget (zip bombs).
    """

    def __init__(self, data: bytes) -> None:
        self.data, self.budget = data, _MAT_BUDGET
        self.order = {b"IM": "<", b"MI": ">"}.get(data[126:128])

    def run(self) -> None:
        if len(self.data) >= 128 and self.order:  # else not v5: scipy fails cheaply itself
            self._walk(self.data, 128, len(self.data), depth=0, padded=False)

    def _elements(self, buf: bytes, pos: int, end: int, padded: bool):
        """(type, start, stop) of each tagged element in buf[pos:end]."""
        while pos + 8 <= end:
            mtype, nbytes = struct.unpack_from(self.order + "II", buf, pos)
            if mtype >> 16:  # small element: 4-byte tag and payload share 8 bytes
                yield mtype & 0xFFFF, pos + 4, pos + 4 + (mtype >> 16)
                pos += 8
                continue
            if pos + 8 + nbytes > end:
                raise ValueError("MAT element runs past its container")
            yield mtype, pos + 8, pos + 8 + nbytes
            pos += 8 + nbytes + (-nbytes % 8 if padded else 0)  # sub-elements pad to 8

    def _walk(self, buf: bytes, pos: int, end: int, depth: int, padded: bool) -> None:
        if depth > 16:
            raise ValueError("MAT arrays nested too deeply")
        for mtype, start, stop in self._elements(buf, pos, end, padded):
            if mtype == 15:  # miCOMPRESSED: one zlib stream holding a matrix
                inflater = zlib.decompressobj()
                inner = inflater.decompress(buf[start:stop], self.budget)
                self.budget -= len(inner)
                if inflater.unconsumed_tail or self.budget <= 0:
                    raise ValueError(f"MAT data inflates past {_MAT_BUDGET >> 20} MiB")
                self._walk(inner, 0, len(inner), depth + 1, padded=False)
            elif mtype == 14:  # miMATRIX: flags, dims, name, data or nested matrices
                self._check_dims(buf, start, stop)
                self._walk(buf, start, stop, depth + 1, padded=True)

    def _check_dims(self, buf: bytes, start: int, stop: int) -> None:
        subs = list(itertools.islice(self._elements(buf, start, stop, True), 2))
        if len(subs) < 2:
            return  # an empty matrix
        (_, flags, _), (_, dims_start, dims_stop) = subs
        mclass = struct.unpack_from(self.order + "I", buf, flags)[0] & 0xFF
        dims = struct.unpack_from(f"{self.order}{(dims_stop - dims_start) // 4}i", buf, dims_start)
        # each cell/struct element needs a tag (8 bytes), any other element >= 1 byte;
        # sparse (class 5) dims allocate nothing themselves
        per = 8 if mclass in (1, 2, 3, 16, 17) else 0 if mclass == 5 else 1
        if min(dims, default=0) < 0 or math.prod(dims) * per > stop - start:
            raise ValueError(f"MAT array declares dims {dims} in {stop - start} bytes")


def check_aligned(image: np.ndarray, mask: np.ndarray, path: Path | str) -> None:
    """Refuse a mask whose size differs from the image's; name a transposed pair as such.

    A transposed mask is never rotated to fit: which way to rotate is a guess, and a
    wrong guess yields a plausible-looking but misaligned label map.
    """
    (h, w), (mh, mw) = image.shape[:2], mask.shape[:2]
    if (mh, mw) == (h, w):
        return
    hint = " (transposed: portrait vs landscape; not rotated)" if (mh, mw) == (w, h) else ""
    raise DataError(path, f"mask size {mw}x{mh} != image size {w}x{h} (width x height){hint}")


def apply_lut(raw: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map raw uint8 label values through `mapping`; unmapped values pass unchanged."""
    lut = np.arange(256, dtype=np.uint8)
    for value, cls in mapping.items():
        lut[value] = cls
    return lut[raw]

