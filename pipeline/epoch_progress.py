"""Lightning's training progress as one plain line per epoch, for output that is not a terminal.

On a terminal Lightning's own bar is right; in a log file (or DVC's captured output) it is
either a tqdm bar full of carriage returns or a Rich bar that shows only its final state.
`epoch_lines(trainer_cfg, name)` gives the callback to pass to `pipeline.train.fit` then
(a ProgressBar in the Trainer's callbacks replaces Lightning's default one), nothing on a
terminal or when `trainer.enable_progress_bar` is off.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback, ProgressBar

from pipeline.config import TrainerCfg
from pipeline.console import duration, interactive

SHOWN = ("train/loss_epoch", "val/iou", "val/iou_tuned")  # the figures an epoch line shows, when logged


def figure(value: Any) -> str:
    """A metric as the line shows it (3 significant digits)."""
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


class EpochLines(ProgressBar):
    """One line per training epoch on `stream` (default stderr):
    `Unet-resnet18 epoch 2/8: 120 batches in 35 s, train/loss_epoch 0.412, val/iou_tuned 0.613`."""

    def __init__(self, name: str = "", stream: TextIO | None = None) -> None:
        super().__init__()
        self.name = name
        self.stream = stream
        self._enabled = True
        self._started = 0.0
        self._batches = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._batches = time.monotonic(), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._batches += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        metrics = self.get_metrics(trainer, pl_module)
        shown = ", ".join(f"{key} {figure(metrics[key])}" for key in SHOWN if key in metrics)
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        line = (f"{self.name + ' ' if self.name else ''}epoch {trainer.current_epoch + 1}{epochs}: "
                f"{self._batches} batches in {duration(time.monotonic() - self._started)}"
                + (f", {shown}" if shown else ""))
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()


def epoch_lines(trainer_cfg: TrainerCfg, name: str = "", stream: TextIO | None = None) -> list[Callback]:
    """[EpochLines] when the progress bar is on and `stream` (stderr) is not a terminal, else []."""
    if not trainer_cfg.enable_progress_bar or interactive(stream):
        return []
    return [EpochLines(name, stream)]
