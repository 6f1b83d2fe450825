"""TTPLA: labelme JSON annotations (polygons) next to their images, one folder.

Shapes are rasterised the way labelme's own shape_to_mask does (PIL ImageDraw, outline
included), so masks match what annotators saw in the tool. Class layers are drawn in a
fixed order, lines -> towers -> void, so void (IGNORE_INDEX) wins wherever it overlaps.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pipeline.config import TtplaCfg
from pipeline.data.sources.base import (
    IGNORE_INDEX,
    LINE,
    TOWER,
    Sample,
    validate_sample,
)
from pipeline.data.sources.files import decode_rgb, read_rgb
from pipeline.errors import DataError, one_line

MIB = 2**20
LINE_WIDTH = 3  # px for "line"/"linestrip" shapes: power lines are a few pixels wide
DRAW_ORDER = (LINE, TOWER, IGNORE_INDEX)


def normalise_label(label: str) -> str:
    """'  Tower Lattice ' and 'tower-lattice' -> 'tower_lattice' (annotators are messy)."""
    return re.sub(r"[\s_\-]+", "_", label.strip().lower())


class TtplaSource:
    """One Sample per labelme JSON file in root (non-recursive); key = JSON stem."""

    def __init__(self, root: Path, cfg: TtplaCfg) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.classes: dict[str, int] = {}
        # later lists override earlier ones, so a label listed twice gets the stronger class
        for labels, cls in ((cfg.line_labels, LINE), (cfg.tower_labels, TOWER),
                            (cfg.void_labels, IGNORE_INDEX)):
            self.classes.update({normalise_label(lab): cls for lab in labels})

    def keys(self) -> list[str]:
        """Stems of the *.json files in root, sorted."""
        if not self.root.is_dir():
            raise DataError(self.root, "TTPLA root is not a directory")
        stems = sorted(p.stem for p in self.root.glob("*.json") if p.is_file())
        if not stems:
            raise DataError(self.root, "no labelme *.json files")
        return stems

    def load(self, key: str) -> Sample:
        """Read the JSON, its image (file or embedded imageData) and rasterise the shapes."""
        json_path = self.root / f"{key}.json"
        doc = self._read_json(json_path)
        image, image_ref = self._read_image(doc, json_path)
        _check_declared_size(doc, image, json_path)
        mask, unknown, skipped = self._rasterise(doc, image.shape[:2], json_path)
        meta = {"source": "ttpla", "path": str(json_path), "image": image_ref,
                "unknown_labels": dict(sorted(unknown.items())), "skipped_shapes": skipped}
        return validate_sample(Sample(key, image, mask, meta), json_path)

    def group(self, key: str) -> str:
        """Every image is its own group."""
        return key

    def fixed_split(self) -> dict[str, str] | None:
        """TTPLA has no split of its own here."""
        return None

    def _read_json(self, path: Path) -> dict[str, Any]:
        # refuse absurd files before parsing: the only big legitimate part is imageData
        limit = self.cfg.max_image_data_mb * MIB * 4 / 3 + 16 * MIB
        try:
            if path.stat().st_size > limit:
                raise DataError(path, f"JSON larger than {limit / MIB:.0f} MiB; refused")
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
            raise DataError(path, f"malformed labelme JSON ({one_line(err)})") from None
        if not isinstance(doc, dict):
            raise DataError(path, "labelme JSON must be an object")
        return doc

    def _read_image(self, doc: dict[str, Any], json_path: Path) -> tuple[np.ndarray, str]:
        ref = doc.get("imagePath")
        if ref is not None and not isinstance(ref, str):
            raise DataError(json_path, "imagePath must be a string")
        if ref:
            # labelme written on Windows stores backslashes
            try:
                path = (json_path.parent / ref.replace("\\", "/")).resolve()
                found = path.is_file()
            except (OSError, ValueError) as err:  # NUL bytes, surrogates, over-long names
                raise DataError(json_path, f"unusable imagePath ({one_line(err)})") from None
            if not path.is_relative_to(self.root.resolve()):
                raise DataError(json_path, f"imagePath {ref!r} resolves outside {self.root}; "
                                "refused")
            if found:
                return read_rgb(path), str(path)
        data = doc.get("imageData")
        if not data:
            raise DataError(json_path, f"image {ref!r} not found and no imageData")
        if not isinstance(data, str):
            raise DataError(json_path, "imageData must be a base64 string")
        size_mb = len(data) * 3 / 4 / MIB
        if size_mb > self.cfg.max_image_data_mb:
            raise DataError(json_path, f"imageData of {size_mb:.3g} MiB exceeds "
                            f"max_image_data_mb={self.cfg.max_image_data_mb}; refused")
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as err:
            raise DataError(json_path, f"imageData is not base64 ({one_line(err)})") from None
        return decode_rgb(raw, f"{json_path} (imageData)"), "imageData"

    def _rasterise(
        self, doc: dict[str, Any], size: tuple[int, int], json_path: Path
    ) -> tuple[np.ndarray, Counter[str], int]:
        shapes = doc.get("shapes")
        if not isinstance(shapes, list):
            raise DataError(json_path, "'shapes' must be a list")
        layers: dict[int, list[tuple[str, list[tuple[float, float]]]]] = {c: [] for c in DRAW_ORDER}
        unknown: Counter[str] = Counter()
        for i, shape in enumerate(shapes):
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                raise DataError(json_path, f"shapes[{i}] has no string 'label'")
            cls = self.classes.get(normalise_label(shape["label"]))
            if cls is None:
                unknown[shape["label"].strip()] += 1
                continue
            kind = shape.get("shape_type") or "polygon"  # old labelme omits shape_type
            points = _points(shape.get("points"), size, json_path, i)
            layers[cls].append((str(kind).lower(), points))
        height, width = size
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        skipped = 0
        for cls in DRAW_ORDER:
            for kind, points in layers[cls]:
                skipped += not _draw(draw, kind, points, cls)
        return np.asarray(canvas, dtype=np.uint8).copy(), unknown, skipped


def _check_declared_size(doc: dict[str, Any], image: np.ndarray, json_path: Path) -> None:
    """imageHeight/imageWidth, where given, must match the image actually read."""
    height, width = image.shape[:2]
    declared = (doc.get("imageWidth"), doc.get("imageHeight"))
    for value, actual in zip(declared, (width, height), strict=True):
        if value is not None and value != actual:
            raise DataError(json_path, f"declares imageWidth x imageHeight "
                            f"{declared[0]!r}x{declared[1]!r} but the image is {width}x{height}")


def _points(raw: Any, size: tuple[int, int], json_path: Path, i: int) -> list[tuple[float, float]]:
    """Validated [[x, y], ...] as tuples, bounded so absurd coordinates stay harmless.

    Points outside the image are clipped by the rasteriser itself, which is exact;
    clamping vertices onto the border would bend every edge that leaves the image.
    """
    if not isinstance(raw, list):
        raise DataError(json_path, f"shapes[{i}].points must be a list")
    span = 4 * max(size)
    out = []
    for p in raw:
        if (not isinstance(p, list) or len(p) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
                or not all(math.isfinite(v) for v in p)):
            raise DataError(json_path, f"shapes[{i}].points has a bad point {str(p)[:40]}")
        out.append((min(max(float(p[0]), -span), span), min(max(float(p[1]), -span), span)))
    return out


def _draw(draw: ImageDraw.ImageDraw, kind: str, pts: list[tuple[float, float]], cls: int) -> bool:
    """Draw one shape in class `cls`; False when it is degenerate or of an unknown type."""
    if kind == "polygon" and len(pts) >= 3:
        draw.polygon(pts, fill=cls, outline=cls)
    elif kind == "rectangle" and len(pts) >= 2:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        draw.rectangle((min(xs), min(ys), max(xs), max(ys)), fill=cls, outline=cls)
    elif kind in ("line", "linestrip") and len(pts) >= 2:
        draw.line(pts, fill=cls, width=LINE_WIDTH)
    elif kind == "circle" and len(pts) >= 2:
        (cx, cy), (px, py) = pts[0], pts[1]
        r = math.hypot(px - cx, py - cy)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=cls, outline=cls)
    else:
        # a "point" marks no area: ignored on purpose, so it does not count as skipped
        return kind == "point"
    return True
