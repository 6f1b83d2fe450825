"""LightningDataModule over a prepared folder: biased random crops for training, whole
padded images for evaluation, albumentations policies given as data."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.config import PAD_MULTIPLE, TrainCfg
from pipeline.labels import IGNORE_INDEX, LINE
from pipeline.errors import PipelineError
from pipeline.card import NORMALISATION
from pipeline.resume import epoch_seed


def build_policy(specs: list[dict[str, Any]]) -> list[A.BasicTransform]:
    """[{name: HorizontalFlip, p: 0.5}, ...] -> albumentations transforms."""
    transforms = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop("name", None)
        cls = getattr(A, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise PipelineError(f"augment policy: {name!r} is not an albumentations transform")
        try:
            transforms.append(cls(**spec))
        except (TypeError, ValueError) as err:
            raise PipelineError(f"augment policy: {name}: {err}") from None
    return transforms


def train_transform(cfg: TrainCfg) -> A.Compose:
    """Pad small images, crop (mostly around line pixels), augment, normalise."""
    size = cfg.crop_size
    crop = A.OneOf([
        # crops that hold line pixels: the class is ~1 % of pixels, so plain random crops
        # would mostly teach the model to say "background"
        A.CropNonEmptyMaskIfExists(size, size, ignore_values=[IGNORE_INDEX], p=cfg.line_crop_fraction),
        A.RandomCrop(size, size, p=1 - cfg.line_crop_fraction),
    ], p=1.0)
    return A.Compose([
        A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
        crop,
        *build_policy(cfg.augment),
        A.Normalize(**NORMALISATION),
    ])


def eval_transform() -> A.Compose:
    """Whole images, normalised; padding to a multiple of 32 happens in `pad_collate`."""
    return A.Compose([A.Normalize(**NORMALISATION)])


class PreparedSplit(Dataset):
    """One split of a prepared folder: (image CHW float, mask HW long, name)."""

    def __init__(self, root: Path, split: str, transform: A.Compose) -> None:
        manifest = json.loads((root / "manifest.json").read_text())
        self.names = [f["name"] for f in manifest["files"] if f["split"] == split]
        self.folder, self.transform = root / split, transform

    def __len__(self) -> int:
        return len(self.names)

    def read(self, name: str) -> np.ndarray:
        """The prepared image `name` as HxWx3 uint8 RGB."""
        return cv2.cvtColor(cv2.imread(str(self.folder / "images" / f"{name}.png")), cv2.COLOR_BGR2RGB)

    def read_mask(self, name: str) -> np.ndarray:
        """The prepared mask `name`: HxW class ids with IGNORE_INDEX."""
        return cv2.imread(str(self.folder / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = index if isinstance(index, tuple) else (index, 0)
        name = self.names[index]
        image, mask = self.read(name), self.read_mask(name)
        # albumentations draws from its own generator: seeded per item by EpochSampler, the
        # crops and augmentations depend on (seed, epoch, item) only, in any worker
        self.transform.set_random_seed(seed)
        out = self.transform(image=image, mask=mask)
        return {
            "image": torch.from_numpy(out["image"].transpose(2, 0, 1).copy()),
            "mask": torch.from_numpy(out["mask"].astype(np.int64)),
            "name": name,
        }


def pad_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images of any size/orientation, padded bottom-right to a multiple of 32;
    padding is IGNORE_INDEX in the mask, so metrics and losses skip it."""
    height = max(item["image"].shape[1] for item in batch)
    width = max(item["image"].shape[2] for item in batch)
    height, width = (-(-s // PAD_MULTIPLE) * PAD_MULTIPLE for s in (height, width))
    images = torch.zeros(len(batch), 3, height, width)
    masks = torch.full((len(batch), height, width), IGNORE_INDEX, dtype=torch.long)
    for i, item in enumerate(batch):
        _, h, w = item["image"].shape
        images[i, :, :h, :w] = item["image"]
        masks[i, :h, :w] = item["mask"]
    return {"image": images, "mask": masks, "name": [item["name"] for item in batch]}


class EpochSampler(Sampler):
    """Shuffled (index, item seed) pairs drawn from (seed, epoch) alone.

    Not from the global RNG: Lightning builds an epoch's iterator before or after the epoch
    hooks depending on whether the run was resumed, so only a sampler that asks for the
    epoch when iterated makes a resumed epoch repeat the killed one exactly.
    """

    def __init__(self, size: int, seed: int, epoch: Callable[[], int]) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch()))
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(2**31 - 1, (self.size,), generator=generator).tolist()
        return iter(list(zip(order, seeds, strict=True)))


class SegmentationData(L.LightningDataModule):
    """Train/val/test loaders over `root` (the prepare stage's output); `seed` and the
    trainer's epoch decide the training crops."""

    def __init__(self, root: Path | str, cfg: TrainCfg, seed: int = 0) -> None:
        super().__init__()
        self.root, self.cfg, self.seed = Path(root), cfg, seed
        if not (self.root / "manifest.json").exists():
            raise PipelineError(f"{self.root}: no manifest.json; run the prepare stage first")

    def _loader(self, split: str, train: bool) -> DataLoader:
        transform = train_transform(self.cfg) if train else eval_transform()
        dataset = PreparedSplit(self.root, split, transform)
        if len(dataset) == 0:
            raise PipelineError(f"{self.root}: the {split} split is empty")
        sampler = EpochSampler(len(dataset), self.seed, self._epoch) if train else None
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size if train else self.cfg.eval_batch_size,
            sampler=sampler,
            drop_last=train and len(dataset) >= self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            collate_fn=pad_collate,
        )

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def line_fraction(batch: dict[str, Any]) -> float:
    """Share of labelled pixels that are line (used to check crop bias)."""
    mask = batch["mask"]
    valid = mask != IGNORE_INDEX
    return float((mask[valid] == LINE).float().mean()) if valid.any() else 0.0
