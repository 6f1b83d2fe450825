"""What a pruning method is (`Method`) and what it is given (`PruneContext`).

A method decides which template entries (channel group indices, `templates.py`) to keep
under a MAC target; `run.prune` then folds and removes the others, the same way for every
method. It may train first: `sparsifier` returns a Lightning callback that the
sparsification run hooks around the optimiser step (Torch-Pruning's regulariser shape), and
`keep` is asked afterwards. One-shot methods return no sparsifier and only score
(Torch-Pruning's importance shape: `methods.ImportanceMethod`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import lightning as L
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pipeline.config import PruneCfg, TrainCfg
from pipeline.data.datamodule import PreparedSplit, pad_collate, train_transform
from pipeline.pruning.templates import Templates

CALIBRATION_CROPS = 16  # training crops a data-driven criterion sees: enough to rank, cheap to run


class NoOptions(BaseModel):
    """The options block of a method that has none: `prune.<method>: {}`."""

    model_config = ConfigDict(extra="forbid")


def calibration_loader(data: Path, train: TrainCfg, seed: int, crops: int = CALIBRATION_CROPS) -> DataLoader:
    """A small fixed set of training crops (no augmentation), the same on every call: item i
    is cropped with seed `seed + i`, so no global random state is read or moved."""
    dataset = PreparedSplit(Path(data), "train", train_transform(train.model_copy(update={"augment": []})))
    items = [(i % len(dataset), seed + i) for i in range(min(crops, max(len(dataset), 1)))]
    return DataLoader(dataset, batch_size=train.batch_size, sampler=items, collate_fn=pad_collate)


@dataclass
class PruneContext:
    """Everything a method may read: the model with its templates attached, the common prune
    config, the method's validated options, the MAC target and a calibration data loader
    (built on first use, so methods that need no data cost nothing)."""

    model: nn.Module
    templates: Templates
    config: PruneCfg
    options: BaseModel
    reduction: float
    make_loader: Callable[[], DataLoader] | None = field(default=None, repr=False)

    @cached_property
    def calibration(self) -> DataLoader:
        """Batches of fixed training crops ({"image", "mask", "name"}), built once."""
        if self.make_loader is None:
            raise ValueError("this prune run was given no data to calibrate on")
        return self.make_loader()


class Method:
    """A pruning method: subclass it, set `Options` (a pydantic model, defaults that work)
    and `trains`, implement `keep`, and `sparsifier` if it trains; register it by name in
    `registry.py`. Its options come from params.yaml's `prune.<name>` block."""

    Options: ClassVar[type[BaseModel]] = NoOptions
    trains: ClassVar[bool] = False  # True: the model trains `prune.epochs` with the sparsifier first
    # True: the removed channels still carried signal, so BatchNorm statistics are re-estimated
    # after removal. False: training pulled the dropped templates onto 0; they are set exactly
    # to 0 before removal (removal.py), and the statistics already fit the smaller model
    recalibrate: ClassVar[bool] = True

    def __init__(self, options: BaseModel) -> None:
        self.options = options
        # per template entry, the score `keep` decided on (the saliency gap reads it); set by `keep`
        self.decision_scores: Tensor | None = None
        self.decided_by_score: Tensor | None = None  # the entries the score kept, before the templates' rules

    def sparsifier(self, ctx: PruneContext) -> L.Callback | None:
        """The training-time callback of a method that trains (None for one-shot methods)."""
        return None

    def keep(self, ctx: PruneContext) -> Tensor:
        """Per template entry, True to keep: the decision that meets `ctx.reduction`;
        also sets `decision_scores`, the per-entry score the decision was made on."""
        raise NotImplementedError
