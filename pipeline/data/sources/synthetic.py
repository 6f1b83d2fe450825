"""Procedural aerial images with power lines: the default data set, so a fresh clone runs.

Every image has its own numpy Generator seeded with [seed, split, index], so an image
never depends on how many others are generated. Two renderers: `wires` (catenaries seen
by a UAV camera, pipeline.data.sources.wires, optionally drawn onto the user's photos; the
params.yaml default) and `scenes` (procedural aerial scenes with towers,
pipeline.data.sources.scenes; still SyntheticCfg's default where no params.yaml is merged).
"""

from __future__ import annotations

import numpy as np

from pipeline.config import SyntheticCfg
from pipeline.data.sources.backgrounds import BackgroundFolder, merge_labels
from pipeline.data.sources.base import Sample, validate_sample
from pipeline.data.sources.scenes import generate_scene
from pipeline.data.sources.wires import render_wires
from pipeline.errors import DataError, PipelineError

SPLITS = ("train", "val", "test")


class SyntheticSource:
    """The procedural data set as a Source: a fixed train/val/test split, one group per item."""

    def __init__(self, cfg: SyntheticCfg, seed: int) -> None:
        if seed < 0:
            raise PipelineError(f"synthetic data needs a seed >= 0, got {seed}")
        self.cfg, self.seed = cfg, seed
        self.backgrounds = BackgroundFolder(cfg.backgrounds) if cfg.backgrounds else None
        counts = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
        self._keys = sorted(f"{split}_{i:04d}" for split, n in counts.items() for i in range(n))
        self._known = set(self._keys)

    def keys(self) -> list[str]:
        """All keys, sorted: test_0000.., train_0000.., val_0000.."""
        return list(self._keys)

    def load(self, key: str) -> Sample:
        """Generate the item `key`; the same seed, key and size always give the same bytes."""
        where = f"synthetic:{key}"
        if key not in self._known:
            raise DataError(where, "no such synthetic item (keys look like train_0000)")
        split, index = key.rsplit("_", 1)
        rng = np.random.default_rng([self.seed, SPLITS.index(split), int(index)])
        image, mask = self._render(rng)
        meta = {"source": "synthetic", "index": int(index)}
        return validate_sample(Sample(key, image, mask, meta), where)

    def _render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One image and mask from the configured renderer."""
        h, w = self.cfg.height, self.cfg.width
        if self.cfg.renderer == "scenes":
            return generate_scene(rng, h, w)
        if self.backgrounds is None:
            return render_wires(rng, h, w)
        photo = self.backgrounds.crop(rng, h, w)
        image, mask = render_wires(rng, h, w, photo.image, photo.lines)
        return image, merge_labels(mask, photo)

    def group(self, key: str) -> str:
        """Every synthetic image is independent, so each is its own group."""
        return key

    def fixed_split(self) -> dict[str, str]:
        """The split is part of the key: train_0007 -> train."""
        return {key: key.rsplit("_", 1)[0] for key in self._keys}
