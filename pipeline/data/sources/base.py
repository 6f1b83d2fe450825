"""What every data source yields, and the checks every sample passes on read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.errors import DataError, one_line
from pipeline.labels import BACKGROUND, IGNORE_INDEX, LINE, TOWER

__all__ = ["BACKGROUND", "IGNORE_INDEX", "LINE", "TOWER", "SPLITS", "Sample", "Source", "read_split_file",
           "validate_sample"]
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    """One image with its label map.

    image: HxWx3 uint8 RGB. mask: HxW uint8 with BACKGROUND, LINE, TOWER or IGNORE_INDEX
    (sources always label towers where they know them; `prepare` folds them into
    background unless towers are enabled). meta: JSON-serialisable extras (source path,
    geo-transform, ...).
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """A data source: a list of keys, and a loader that raises DataError for bad items."""

    def keys(self) -> list[str]:
        """All item keys, sorted, so the listing is deterministic."""

    def load(self, key: str) -> Sample:
        """Read one item, validated; raise DataError naming the file and the problem."""

    def group(self, key: str) -> str:
        """Items of one group never straddle splits (e.g. overlapping tiles of a region)."""

    def fixed_split(self) -> dict[str, str] | None:
        """key -> 'train'|'val'|'test' where the source dictates the split, else None."""


ALLOWED_LABELS = frozenset({BACKGROUND, LINE, TOWER, IGNORE_INDEX})


def validate_sample(sample: Sample, path: Path | str) -> Sample:
    """Check shapes, dtypes and label values; raise DataError naming `path` otherwise."""
    image, mask = sample.image, sample.mask
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(path, f"image must be HxWx3 uint8, got shape {image.shape} {image.dtype}")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise DataError(path, f"mask must be HxW uint8, got shape {mask.shape} {mask.dtype}")
    if mask.shape != image.shape[:2]:
        raise DataError(
            path, f"mask size {mask.shape[1]}x{mask.shape[0]} != image size "
            f"{image.shape[1]}x{image.shape[0]} (width x height)"
        )
    bad = sorted(set(np.unique(mask).tolist()) - ALLOWED_LABELS)
    if bad:
        raise DataError(path, f"mask values {bad[:5]} outside the classes {sorted(ALLOWED_LABELS)}")
    return sample


def read_split_file(path: Path) -> dict[str, str]:
    """Parse {"train": [ids], "val": [ids], "test": [ids]} ("_..." keys are comments)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise DataError(path, f"cannot read split file ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise DataError(path, "split file must be a JSON object of split -> list of ids")
    unknown = sorted(k for k in data if k not in SPLITS and not str(k).startswith("_"))
    if unknown:
        raise DataError(path, f"unknown splits {unknown}; expected {list(SPLITS)}")
    assignment: dict[str, str] = {}
    for split in SPLITS:
        ids = data.get(split, [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(path, f"{split!r} must be a list of id strings")
        for image_id in ids:
            if image_id in assignment:
                raise DataError(path, f"id {image_id!r} is in both {assignment[image_id]!r} "
                                f"and {split!r}")
            assignment[image_id] = split
    return assignment
