"""fit(): the one training routine behind every training stage."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn

from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.data.datamodule import SegmentationData
from pipeline.module import SegmentationModule

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """The best model (by val IoU), its tuned threshold, and val/test figures."""

    module: SegmentationModule
    threshold: float
    metrics: dict[str, float]


def fit(model_cfg: ModelCfg, train_cfg: TrainCfg, trainer_cfg: TrainerCfg, data_root: Path,
        log_dir: Path, seed: int, num_classes: int = 2, model: nn.Module | None = None) -> FitResult:
    """Train, keep the best val IoU checkpoint, tune the threshold on val, score test."""
    L.seed_everything(seed, workers=True)
    module = SegmentationModule(model_cfg.model_dump(), train_cfg.model_dump(), num_classes, model=model)
    data = SegmentationData(data_root, train_cfg)
    with tempfile.TemporaryDirectory(prefix="fit-") as work:
        best = ModelCheckpoint(dirpath=work, filename="best", monitor="val/iou", mode="max",
                               save_top_k=1, save_weights_only=True)
        callbacks = [best]
        if train_cfg.early_stopping_patience:
            callbacks.append(EarlyStopping("val/iou", mode="max", patience=train_cfg.early_stopping_patience))
        trainer = L.Trainer(
            max_epochs=train_cfg.epochs,
            limit_train_batches=train_cfg.limit_train_batches,
            callbacks=callbacks,
            logger=DVCLiveLogger(dir=str(log_dir), save_dvc_exp=False, dvcyaml=False),
            default_root_dir=work,
            enable_model_summary=False,
            **trainer_cfg.model_dump(),
        )
        trainer.fit(module, datamodule=data)
        if best.best_model_path:  # safe loading: the checkpoint holds tensors and plain values
            state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
    return evaluate(module, data, trainer_cfg)


def evaluate(module: SegmentationModule, data: SegmentationData, trainer_cfg: TrainerCfg) -> FitResult:
    """Val at 0.5 (the figure selections use), then test at the val-tuned threshold."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                        **{**trainer_cfg.model_dump(), "devices": 1, "strategy": "auto", "num_nodes": 1})
    module.threshold = 0.5
    val = trainer.validate(module, datamodule=data, verbose=False)[0]
    module.threshold = float(val["val/best_threshold"])
    test = trainer.test(module, datamodule=data, verbose=False)[0]
    metrics = {k: float(v) for k, v in {**val, **test}.items() if not k.endswith("best_threshold")}
    return FitResult(module, module.threshold, metrics)


def describe(model_cfg: ModelCfg, num_classes: int, result: FitResult, **extra: Any) -> dict[str, Any]:
    """What model.json records of a trained model."""
    return {"model": model_cfg.model_dump(), "num_classes": num_classes,
            "threshold": result.threshold, "metrics": result.metrics, **extra}
