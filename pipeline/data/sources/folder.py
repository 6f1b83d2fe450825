"""A plain folder pair: root/<images>/NAME.{jpg,png,...} with root/<masks>/NAME.png."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import FolderCfg
from pipeline.data.sources.base import ALLOWED_LABELS, Sample, validate_sample
from pipeline.data.sources.files import (
    apply_lut,
    check_aligned,
    read_label_png,
    read_rgb,
)
from pipeline.errors import DataError, PipelineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".png",)


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """stem -> files with one of `suffixes` (any case); a missing folder is an error."""
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            found.setdefault(path.stem, []).append(path)
    return found


class FolderSource:
    """Images and PNG masks paired by file stem; keys are the union of both stems."""

    def __init__(self, root: Path, cfg: FolderCfg) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.images_dir = self.root / cfg.images
        self.masks_dir = self.root / cfg.masks
        # a bad mapping is a config mistake, not bad data: it must not be skipped per item
        for raw, cls in cfg.mask_values.items():
            if not 0 <= raw <= 255 or cls not in ALLOWED_LABELS:
                raise PipelineError(f"prepare.folder.mask_values: {raw} -> {cls} invalid "
                                    f"(raw 0..255, class in {sorted(ALLOWED_LABELS)})")

    def _listing(self) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        # listed on every call: cheap, and never stale if files change between calls
        return _by_stem(self.images_dir, IMAGE_SUFFIXES), _by_stem(self.masks_dir, MASK_SUFFIXES)

    def keys(self) -> list[str]:
        """Union of image and mask stems, sorted; orphans are keys that fail in load."""
        images, masks = self._listing()
        if not images and not masks:
            raise DataError(self.images_dir, f"no images ({', '.join(IMAGE_SUFFIXES)}) "
                            f"and no masks in {self.masks_dir}")
        return sorted(set(images) | set(masks))

    def load(self, key: str) -> Sample:
        """Read the pair, map raw mask values, validate; DataError for orphans or bad files."""
        images, masks = self._listing()
        image_path = _only(images.get(key, []), key, self.images_dir)
        mask_path = _only(masks.get(key, []), key, self.masks_dir)
        if image_path is None and mask_path is None:
            raise DataError(self.images_dir, f"no image or mask named {key!r}")
        if image_path is None:
            raise DataError(mask_path, f"mask has no image named {key}.* in {self.images_dir}")
        if mask_path is None:
            raise DataError(image_path, f"image has no mask {key}.png in {self.masks_dir}")
        image = read_rgb(image_path)
        mask = apply_lut(read_label_png(mask_path), self.cfg.mask_values)
        check_aligned(image, mask, mask_path)
        meta = {"source": "folder", "path": str(image_path), "mask_path": str(mask_path)}
        return validate_sample(Sample(key, image, mask, meta), mask_path)

    def group(self, key: str) -> str:
        """Every image is its own group."""
        return key

    def fixed_split(self) -> dict[str, str] | None:
        """A plain folder dictates no split."""
        return None


def _only(paths: list[Path], key: str, folder: Path) -> Path | None:
    """The single file for `key`; two files with one stem (a.jpg, a.png) are ambiguous."""
    if len(paths) > 1:
        raise DataError(paths[0], f"{len(paths)} files named {key}.* in {folder}: "
                        f"{[p.name for p in paths]}; keep one")
    return paths[0] if paths else None
