"""PLD-UAV (PLDU): UAV JPEGs with BSDS-style .mat power-line boundaries.

Layout: root/test/N.jpg with root/test_gt/N.mat, and for users with the full set also
root/train/N.jpg with root/train_gt/N.mat. Keys are the image ids ("N"), which is also
how the committed split file (data/splits/pldu.json) names images. A folder of exactly
those ids is split by that file; any other folder in this format (the authors' full
training set, another subset) gets the seeded random split of the other sources.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.data.sources.base import Sample, read_split_file, validate_sample
from pipeline.data.sources.files import (
    check_aligned,
    read_mat_boundaries,
    read_rgb,
)
from pipeline.errors import DataError

log = logging.getLogger(__name__)
SUBSETS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# every PLDU figure uses this split of the 120 public images (unless prepare.split_file names another)
COMMITTED_SPLIT = Path("data/splits/pldu.json")


class PldUavSource:
    """Images and line masks of PLDU; the committed split if the ids are its ids."""

    def __init__(self, root: Path, committed_split: Path | None = COMMITTED_SPLIT) -> None:
        self.root = Path(root)
        self.committed_split = Path(committed_split) if committed_split is not None else None
        self._index: dict[str, Path] | None = None

    def _images(self) -> dict[str, Path]:
        """id -> image path over train/ and test/, built once."""
        if self._index is None:
            self._index = self._scan()
        return self._index

    def _scan(self) -> dict[str, Path]:
        folders = [self.root / s for s in SUBSETS if (self.root / s).is_dir()]
        if not folders:
            raise DataError(self.root, "no test/ or train/ folder of PLDU images")
        index: dict[str, Path] = {}
        for folder in folders:
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if path.stem in index:
                    # ids key the split file, so one id must mean one image
                    raise DataError(path, f"image id {path.stem!r} also at {index[path.stem]}")
                index[path.stem] = path
        if not index:
            raise DataError(self.root, "no PLDU images (*.jpg) in test/ or train/")
        return index

    def keys(self) -> list[str]:
        """All image ids, sorted."""
        return sorted(self._images())

    def load(self, key: str) -> Sample:
        """Image plus its line mask (Boundaries 1 -> LINE); DataError for bad pairs."""
        image_path = self._images().get(key)
        if image_path is None:
            raise DataError(self.root, f"no PLDU image with id {key!r}")
        mat_path = image_path.parent.with_name(image_path.parent.name + "_gt") / f"{key}.mat"
        if not mat_path.is_file():
            raise DataError(image_path, f"no ground truth: {mat_path} is missing")
        image = read_rgb(image_path)
        mask = read_mat_boundaries(mat_path)  # values 0/1 == BACKGROUND/LINE already
        # Orientation is mixed (portrait and landscape); each pair keeps its own.
        check_aligned(image, mask, mat_path)
        sample = Sample(key, image, mask, {"source": "pld-uav", "path": str(image_path)})
        return validate_sample(sample, mat_path)

    def group(self, key: str) -> str:
        """Every image is its own group (no overlapping crops)."""
        return key

    def fixed_split(self) -> dict[str, str] | None:
        """id -> split from the committed split file when this folder holds exactly its ids;
        else None, and the ids are split at random by prepare.val_fraction / test_fraction
        (seeded). One log line says which."""
        on_disk = set(self.keys())
        known = self.committed_split is not None and self.committed_split.is_file()
        committed = read_split_file(self.committed_split) if known else {}
        if set(committed) == on_disk:
            log.info("%s: the split of %s", self.root, self.committed_split)
            return committed
        log.info("%s: its %d image ids are not those of %s: a random split by prepare.val_fraction and "
                 "test_fraction (seeded by base.seed)", self.root, len(on_disk), self.committed_split)
        return None
