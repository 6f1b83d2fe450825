"""Build train/val/test splits from a source into a folder of PNGs plus a manifest."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.sources import Sample, Source, create_source
from pipeline.data.sources.base import read_split_file
from pipeline.errors import DataError, PipelineError
from pipeline.labels import BACKGROUND, CLASS_NAMES, IGNORE_INDEX, TOWER

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def assign_splits(source: Source, keys: list[str], cfg: PrepareCfg, seed: int) -> dict[str, str]:
    """key -> split: `prepare.split_file` if set, else the source's own split if it has one,
    else whole groups shuffled by seed."""
    fixed = split_from_file(Path(cfg.split_file), keys, cfg.root) if cfg.split_file else source.fixed_split()
    if fixed is not None:
        return {key: fixed[key] for key in keys if key in fixed}
    groups = sorted({source.group(key) for key in keys})
    order = np.random.default_rng(seed).permutation(len(groups))
    n_test = round(len(groups) * cfg.test_fraction)
    n_val = round(len(groups) * cfg.val_fraction)
    split_of_group = {}
    for rank, index in enumerate(order):
        split_of_group[groups[index]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return {key: split_of_group[source.group(key)] for key in keys}


def split_from_file(path: Path, keys: list[str], root: str) -> dict[str, str]:
    """key -> split from a split file. Ids it names that the source lacks are an error (a
    split file made for another folder); keys it does not name are left out, and counted."""
    assignment = read_split_file(path)
    missing = sorted(set(assignment) - set(keys))
    if missing:
        raise DataError(path, f"{len(missing)} ids not found under {root} (e.g. {missing[:5]})")
    unassigned = len(set(keys) - set(assignment))
    log.info("the split of %s%s", path, f" ({unassigned} items in no split, left out)" if unassigned else "")
    return assignment


def fold_classes(mask: np.ndarray, towers: bool) -> np.ndarray:
    """Towers are an opt-in class; without it they are background."""
    if not towers:
        mask = np.where(mask == TOWER, BACKGROUND, mask).astype(np.uint8)
    return mask


def write_sample(sample: Sample, folder: Path) -> None:
    """Write image and mask as lossless PNGs (cv2's encoder is deterministic)."""
    for kind, array in (("images", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)), ("masks", sample.mask)):
        path = folder / kind / f"{sample.name}.png"
        if not cv2.imwrite(str(path), array):
            raise PipelineError(f"{path}: could not write")


def class_counts(mask: np.ndarray) -> dict[str, int]:
    """Pixel count per class name."""
    values, counts = np.unique(mask, return_counts=True)
    return {CLASS_NAMES[int(v)]: int(c) for v, c in zip(values, counts, strict=True)}


def summarise(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Images and class-pixel fractions of one split."""
    totals: dict[str, int] = {}
    for entry in entries:
        for name, count in entry["pixels"].items():
            totals[name] = totals.get(name, 0) + count
    n_pixels = sum(totals.values()) or 1
    return {
        "images": len(entries),
        "fractions": {name: totals.get(name, 0) / n_pixels for name in CLASS_NAMES.values()},
    }


def prepare(cfg: PrepareCfg, base: BaseCfg, out: Path) -> dict[str, Any]:
    """Read every item of the source, split it and write `out`; return the manifest.

    Writes into a temporary sibling folder and renames it at the end, so a failure
    never leaves a half-written `out`.
    """
    source = create_source(cfg, base.seed)
    keys = source.keys()
    if not keys:
        raise DataError(cfg.root, "no items found")
    split_of = assign_splits(source, keys, cfg, base.seed)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in SPLITS:
            for kind in ("images", "masks"):
                (tmp / split / kind).mkdir(parents=True)
        entries, skipped = _write_all(source, split_of, cfg.skip_bad, base.towers, tmp)
        if split_of and not entries:
            raise DataError(cfg.root, f"all {len(skipped)} items were skipped as bad; nothing to prepare")
        manifest = _manifest(cfg, base, entries, skipped, unassigned=len(keys) - len(split_of))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_all(source: Source, split_of: dict[str, str], skip_bad: bool, towers: bool, tmp: Path):
    entries, skipped = [], []
    # disable=None: no bar when stderr is not a terminal (CI logs, a captured error line)
    for key in tqdm(sorted(split_of), desc="prepare", unit="img", disable=None):
        try:
            sample = source.load(key)
        except DataError as err:
            if not skip_bad:
                raise
            log.warning("skipped %s", err)
            skipped.append(str(err))
            continue
        sample.mask = fold_classes(sample.mask, towers)
        write_sample(sample, tmp / split_of[key])
        height, width = sample.mask.shape
        entries.append({"name": sample.name, "split": split_of[key], "height": height, "width": width,
                        "pixels": class_counts(sample.mask), "meta": sample.meta})
    return entries, skipped


def _manifest(cfg: PrepareCfg, base: BaseCfg, entries, skipped, unassigned: int) -> dict[str, Any]:
    splits = {split: summarise([e for e in entries if e["split"] == split]) for split in SPLITS}
    empty = [e["name"] for e in entries if not (e["pixels"].get("line") or e["pixels"].get("tower"))]
    if empty:
        log.warning("%d of %d masks have no line or tower pixel (kept, counted in the manifest)",
                    len(empty), len(entries))
    return {
        "source": cfg.source,
        "root": cfg.root,
        "split_file": cfg.split_file,
        "seed": base.seed,
        "classes": ["background", "line", "tower"][: base.num_classes],
        "ignore_index": IGNORE_INDEX,
        "splits": splits,
        "skipped": {"count": len(skipped), "errors": skipped},
        # kept on purpose (they teach "no line here"), but counted: many of them hint at a
        # wrong prepare.folder.mask_values mapping
        "empty_masks": {"count": len(empty), "names": empty},
        "unassigned": unassigned,
        "files": entries,
    }
