"""A folder of the user's aerial photos as backgrounds for the `wires` renderer.

Each rendered item picks a photo and a random crop (of a random scale) resized to the
configured size, so a few photos give many different backgrounds. The photos are shared by
the train, val and test splits: val and test then measure the wires, not new places.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.data.sources.files import read_rgb
from pipeline.errors import DataError

SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class BackgroundFolder:
    """The image files directly inside `folder`, sorted by name; crops of them on demand."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(self.folder, "synthetic.backgrounds is not a folder")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.paths:
            raise DataError(self.folder, f"no background images ({', '.join(SUFFIXES)}) in this folder")

    def crop(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A random crop of a random photo as HxWx3 uint8; a bad file raises its one-line DataError."""
        image = read_rgb(self.paths[int(rng.integers(len(self.paths)))])
        rows, cols = image.shape[:2]
        largest = min(rows / height, cols / width)  # crop scale that still fits the photo
        scale = np.exp(rng.uniform(0, np.log(largest))) if largest > 1 else largest
        crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
        top, left = rng.integers(0, rows - crop_h + 1), rng.integers(0, cols - crop_w + 1)
        patch = image[top:top + crop_h, left:left + crop_w]
        shrink = crop_h >= height
        patch = cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return np.ascontiguousarray(patch[:, ::-1] if rng.random() < 0.5 else patch)
