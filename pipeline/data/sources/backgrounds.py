"""A folder of the user's aerial photos as backgrounds for the `wires` renderer.

Each rendered item picks a photo and a random crop (of a random scale) resized to the
configured size, so a few photos give many different backgrounds. The photos are shared by
the train, val and test splits: val and test then measure the wires, not new places.

A folder laid out like the `folder` source (`images/NAME.*` with `masks/NAME.png` holding
class ids: 0 background, 1 line, 2 tower, 255 ignore) is a labelled background: the photo's
own wires stay labelled (a mask with 255 but no 1, likely a 0/255 line mask, is refused).
Its mask is cropped with the photo and resized with it (by area when the crop shrinks,
bilinearly when it grows), each class as its coverage share, and the
mask rule of the renderer applies to the result: line where the line coverage is >= 0.5,
ignore where it is between 0 and 0.5 or where an ignore pixel falls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import FolderCfg
from pipeline.data.sources.files import read_rgb
from pipeline.data.sources.folder import FolderSource
from pipeline.errors import DataError
from pipeline.labels import BACKGROUND, IGNORE_INDEX, LINE, TOWER

SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


@dataclass
class Background:
    """A crop: HxWx3 uint8 RGB; for a labelled photo also its line coverage (HxW float in
    [0, 1]) and where its mask says tower (coverage >= 0.5) or ignore (any coverage)."""

    image: np.ndarray
    lines: np.ndarray | None = None
    tower: np.ndarray | None = None
    ignore: np.ndarray | None = None


class BackgroundFolder:
    """The image files directly inside `folder` (or, labelled, its images/ and masks/),
    sorted by name; crops of them on demand."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(self.folder, "synthetic.backgrounds is not a folder")
        self.labelled: FolderSource | None = None
        if (self.folder / "images").is_dir() and (self.folder / "masks").is_dir():
            self.labelled = FolderSource(self.folder, FolderCfg())  # class ids as they are: no mapping
            self.keys = self.labelled.keys()
            self.count = len(self.keys)
            return
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.paths:
            raise DataError(self.folder, f"no background images ({', '.join(SUFFIXES)}) in this folder")
        self.count = len(self.paths)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The photo (and its mask, if labelled) number `index`; bad files raise one-line DataErrors."""
        if self.labelled is None:
            return read_rgb(self.paths[index]), None
        sample = self.labelled.load(self.keys[index])
        if (sample.mask == IGNORE_INDEX).any() and not (sample.mask == LINE).any():
            # most likely a 0/255 line mask: read as class ids it would be all ignore, silently
            raise DataError(sample.meta["mask_path"], "mask has 255 (ignore) but no 1 (line): a 0/255 line mask? "
                            "synthetic.backgrounds masks hold class ids (0 background, 1 line, 2 tower, 255 ignore)")
        return sample.image, sample.mask

    def crop(self, rng: np.random.Generator, height: int, width: int) -> Background:
        """A random crop of a random photo (and of its mask) at height x width."""
        image, mask = self._read(int(rng.integers(self.count)))
        rows, cols = image.shape[:2]
        largest = min(rows / height, cols / width)  # crop scale that still fits the photo
        scale = np.exp(rng.uniform(0, np.log(largest))) if largest > 1 else largest
        crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
        top, left = rng.integers(0, rows - crop_h + 1), rng.integers(0, cols - crop_w + 1)
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        shrink = crop_h >= height
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        patch = cv2.resize(image[window], (width, height), interpolation=interpolation)
        flip = rng.random() < 0.5
        background = Background(np.ascontiguousarray(patch[:, ::-1] if flip else patch))
        if mask is not None:
            def share(value: int) -> np.ndarray:  # per output pixel, the share of it the class covers
                cover = cv2.resize((mask[window] == value).astype(np.float32), (width, height),
                                   interpolation=interpolation)
                return np.ascontiguousarray(np.clip(cover[:, ::-1] if flip else cover, 0, 1))

            background.lines, background.tower = share(LINE), share(TOWER) >= 0.5
            background.ignore = share(IGNORE_INDEX) > 0
        return background


def merge_labels(mask: np.ndarray, background: Background) -> np.ndarray:
    """The rendered mask (its lines already include the photo's) with the photo's towers
    and ignore pixels added where the render left background."""
    if background.tower is None or background.ignore is None:
        return mask
    mask = mask.copy()
    free = mask == BACKGROUND
    mask[free & background.tower] = TOWER
    mask[free & background.ignore] = IGNORE_INDEX
    return mask
