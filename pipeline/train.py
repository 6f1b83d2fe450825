"""fit(): the one training routine behind every training stage.

The `trainer` section goes to Lightning unchanged, so `strategy: ddp` on several devices or
nodes works: every rank trains (on its own shard of the data), then global rank 0 alone
evaluates and returns the result; the other ranks get None and must write nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn
from torchmetrics import Metric

from pipeline.card import ModelCard, TrainingData
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.data.datamodule import SegmentationData
from pipeline.epoch_progress import epoch_lines
from pipeline.errors import PipelineError
from pipeline.module import SegmentationModule
from pipeline.resume import BEST, LAST, AtomicCheckpointIO, EpochSeed, ResumeStore, finished_epochs, mark_finished
from pipeline.selection import SCORE

log = logging.getLogger(__name__)


class StopOnNonFinite(Callback):
    """Stop training after a NaN/inf training loss with a message saying what to change
    (Lightning would otherwise train on, or stop silently via early stopping).

    Each step only records, on the loss's device, the first non-finite loss and its batch;
    the check reads them at the epoch's last batch, before validation and checkpoints: reading
    the loss every step would make every step wait for the device (a GPU sync)."""

    def __init__(self, kept: Path | None = None) -> None:
        self.kept = kept  # where the last good (epoch-end) checkpoint is, if resuming
        self.first: torch.Tensor | None = None  # [batch index (-1: none yet), loss] of the first bad step

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.first = None

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:  # device ops only (fills, no copies from the host)
            loss = loss.detach().float().reshape(-1)[0]
            if self.first is None:
                self.first = torch.full((2,), -1.0, device=loss.device)
            new = (self.first[0] < 0) & ~torch.isfinite(loss)
            self.first = torch.where(new, torch.stack([torch.full_like(loss, batch_idx), loss]), self.first)
        if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's end: the decision
            self.check(trainer)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.check(trainer)  # a run stopped mid-epoch (max_steps) decides here

    def check(self, trainer: L.Trainer) -> None:
        """Raise if a non-finite loss was seen this epoch."""
        if self.first is None:
            return
        batch, loss = self.first.tolist()
        if batch < 0:
            return
        kept = (f"; the last good checkpoint (end of epoch {trainer.current_epoch - 1}) is kept in {self.kept}"
                if self.kept is not None and (self.kept / LAST).exists() else "")
        raise PipelineError(f"training loss became {loss} at epoch {trainer.current_epoch}, batch "
                            f"{int(batch)}: lower train.lr, check the data for bad values, or use "
                            f"trainer.precision: 32-true{kept}")


@dataclass
class FitResult:
    """The best model (by the selection score), its tuned threshold, val/test figures, and the
    epochs trained (fewer than the cap when early stopping ended the run; 0: not trained here)."""

    module: SegmentationModule
    threshold: float
    metrics: dict[str, float]
    epochs: int = 0
    data: Path | None = None  # the prepared data it was trained and scored on


def fit(model_cfg: ModelCfg, train_cfg: TrainCfg, trainer_cfg: TrainerCfg, data_root: Path,
        log_dir: Path, seed: int, num_classes: int = 2, model: nn.Module | None = None,
        callbacks: list[Callback] | None = None, keep_last: bool = False, resume: ResumeStore | None = None,
        **module_options: Any) -> FitResult | None:
    """Train, keep the best checkpoint by SCORE (val IoU at the tuned threshold), tune the
    threshold on val, score test.

    Returns None on every DDP rank but global rank 0 (which returns the result): callers
    write outputs only when they get a result. `callbacks` are added to the Trainer's (their
    state_dict() is checkpointed); `keep_last` keeps the last weights instead of the best
    (sparsification must end where its decisions were made); `resume` keeps the run's
    checkpoints where a rerun continues from them (pipeline.resume); `module_options` go to
    SegmentationModule (templates, teacher).
    """
    L.seed_everything(seed, workers=True)
    module = SegmentationModule(model_cfg.model_dump(), train_cfg.model_dump(), num_classes, model=model,
                                **module_options)
    data = SegmentationData(data_root, train_cfg, seed)
    folder = resume.folder(module, data_root, model=model_cfg, train=train_cfg, trainer=trainer_cfg, seed=seed,
                           keep_last=keep_last) if resume else None
    with _work_folder(folder) as work:
        # checkpoints apart from DVCLive's folder: ModelCheckpoint warns about a non-empty dirpath
        ckpts = work / "checkpoints"
        # at every epoch's end: unless keep_last, the best weights so far; then the full state
        # to resume from, which must come second to hold the best one's updated record
        saved = []
        if not keep_last:
            saved.append(ModelCheckpoint(dirpath=ckpts, filename=Path(BEST).stem, monitor=SCORE, mode="max",
                                         save_weights_only=True, enable_version_counter=False))
        saved.append(ModelCheckpoint(dirpath=ckpts, filename=Path(LAST).stem, enable_version_counter=False))
        callbacks = [*saved, StopOnNonFinite(ckpts if folder else None), EpochSeed(seed), *(callbacks or [])]
        if train_cfg.early_stopping_patience:
            callbacks.append(EarlyStopping(SCORE, mode="max", patience=train_cfg.early_stopping_patience))
        done = finished_epochs(folder)  # a finished run replays no epoch, even one that stopped early
        trainer = L.Trainer(
            max_epochs=train_cfg.epochs if done is None else done,
            limit_train_batches=train_cfg.limit_train_batches,
            callbacks=callbacks,
            logger=DVCLiveLogger(dir=str(work / "dvclive"), save_dvc_exp=False, dvcyaml=False, resume=True),
            default_root_dir=work,
            enable_model_summary=False,
            plugins=[AtomicCheckpointIO()],
            **trainer_cfg.model_dump(),
        )
        checkpoint = ckpts / LAST
        if done is not None:
            log.info("already trained (%d epochs) in %s: replaying its end", done, work)
        elif checkpoint.exists():
            epoch = torch.load(checkpoint, weights_only=True, mmap=True)["epoch"]  # mmap: reads just this
            log.info("resuming after epoch %d from %s", epoch, checkpoint)
        trainer.fit(module, datamodule=data, ckpt_path=checkpoint if checkpoint.exists() else None, weights_only=True)
        if not trainer.is_global_zero:
            return None
        if folder is not None:
            mark_finished(folder, trainer.current_epoch)
        # ModelCheckpoint broadcasts rank 0's dirpath, so this is rank 0's own folder
        if (ckpts / BEST).exists() and not keep_last:  # safe loading: the checkpoint holds tensors and plain values
            state = torch.load(ckpts / BEST, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
        if (work / "dvclive").exists():  # fast_dev_run logs nothing
            shutil.copytree(work / "dvclive", log_dir, dirs_exist_ok=True)
    return evaluate(module, data, trainer_cfg, epochs=trainer.current_epoch)


@contextmanager
def _work_folder(folder: Path | None) -> Iterator[Path]:
    """`folder` (resume state that outlives the process), or a temporary one."""
    if folder is not None:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="fit-") as work:
        yield Path(work)


def evaluate(module: SegmentationModule, data: SegmentationData, trainer_cfg: TrainerCfg,
             epochs: int = 0) -> FitResult:
    """Val, then test at the threshold that maximises val F1; `epochs`: how many were trained.

    Val's metrics hold val/iou at 0.5 (a plain reported figure) and SCORE (val/iou_tuned, at
    val's F1 optimum: what selections read); the test figures are at that tuned threshold.

    Runs on this process alone (one device), on whole splits, also after DDP training.
    """
    # not a terminal: EpochLines stands in for Lightning's bar (whose carriage returns fill a log)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                        callbacks=epoch_lines(trainer_cfg),
                        **{**trainer_cfg.model_dump(), "devices": 1, "strategy": "auto", "num_nodes": 1})
    with local_metrics(module):
        module.threshold = 0.5
        val = trainer.validate(module, datamodule=data, verbose=False)[0]
        module.threshold = float(val["val/best_threshold"])
        test = trainer.test(module, datamodule=data, verbose=False)[0]
    metrics = {k: float(v) for k, v in {**val, **test}.items() if not k.endswith("best_threshold")}
    return FitResult(module, module.threshold, metrics, epochs, data.root)


@contextmanager
def local_metrics(module: nn.Module) -> Iterator[None]:
    """Let the module's torchmetrics compute from this process's state only.

    torchmetrics all-gathers whenever a process group exists, and after DDP training the
    group outlives `trainer.fit`: rank 0 evaluating alone would wait for the other ranks.
    """
    metrics = [m for m in module.modules() if isinstance(m, Metric)]
    saved = [m.distributed_available_fn for m in metrics]
    for m in metrics:
        m.distributed_available_fn = lambda: False
    try:
        yield
    finally:
        for m, fn in zip(metrics, saved, strict=True):
            m.distributed_available_fn = fn


def describe(model_cfg: ModelCfg, num_classes: int, result: FitResult, **extra: Any) -> ModelCard:
    """The model card of a trained model, with the data it saw; `extra`: further ModelCard fields."""
    data = TrainingData.read(result.data) if result.data is not None else None
    return ModelCard(model=model_cfg, num_classes=num_classes, threshold=result.threshold,
                     metrics=result.metrics, training_data=data, **extra)
