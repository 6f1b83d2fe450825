"""PLD-UAV (PLDU): UAV JPEGs with BSDS-style .mat power-line boundaries.

Layout: root/test/N.jpg with root/test_gt/N.mat, and for users with the full set also
root/train/N.jpg with root/train_gt/N.mat. Keys are the image ids ("N"), which is also
how the committed split file (data/splits/pldu.json) names images.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.sources.base import Sample, validate_sample
from pipeline.data.sources.files import (
    check_aligned,
    read_mat_boundaries,
    read_rgb,
)
from pipeline.errors import DataError, one_line

SUBSETS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")


class PldUavSource:
    """Images and line masks of PLDU; the split comes from a fixed split file."""

    def __init__(self, root: Path, split_file: Path | None = None) -> None:
        self.root = Path(root)
        self.split_file = Path(split_file) if split_file is not None else None
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
        """id -> split from the split file; None when no split file is configured."""
        if self.split_file is None:
            return None
        assignment = read_split_file(self.split_file)
        on_disk = set(self.keys())
        missing = sorted(set(assignment) - on_disk)
        if missing:
            raise DataError(self.split_file, f"{len(missing)} ids not found under {self.root} "
                            f"(e.g. {missing[:5]})")
        unassigned = sorted(on_disk - set(assignment))
        if unassigned:
            raise DataError(self.split_file, f"{len(unassigned)} images under {self.root} are "
                            f"in no split (e.g. {unassigned[:5]}); add them to the split file")
        return assignment


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
