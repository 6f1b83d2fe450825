"""SegmentationModule: one LightningModule for every training stage."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from pipeline.config import ModelCfg, TrainCfg
from pipeline.labels import IGNORE_INDEX
from pipeline.losses import Distiller, create_loss
from pipeline.metrics import LineMetrics, ToleranceMetrics, line_probability, line_scores
from pipeline.models import create_model


class SegmentationModule(L.LightningModule):
    """smp model + loss + per-split line metrics; logs `train/loss`, `val/iou`, ...

    `model` may be given ready-made (a pruned network); otherwise it is built from `model_cfg`.
    """

    def __init__(self, model_cfg: dict[str, Any], train_cfg: dict[str, Any], num_classes: int = 2,
                 model: nn.Module | None = None, threshold: float = 0.5, templates: nn.Module | None = None,
                 teacher: Distiller | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "templates", "teacher"])
        self.train_cfg = TrainCfg.model_validate(train_cfg)
        self.model = model if model is not None else create_model(ModelCfg.model_validate(model_cfg), num_classes)
        self.loss = create_loss(self.train_cfg.loss, self.train_cfg.loss_options, num_classes=num_classes)
        self.binary = num_classes == 2
        self.threshold = threshold
        self.metrics = nn.ModuleDict({split: LineMetrics() for split in ("val", "test")})
        # test only: it needs the tuned threshold, known after validation (and costs a distance transform)
        self.tolerance = ToleranceMetrics()
        self.templates = templates  # feature templates being sparsified: trained, never weight-decayed
        self.teacher = teacher  # the dense model to distil from, or None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def _target(self, mask: torch.Tensor) -> torch.Tensor:
        """smp's binary losses take a float (B, 1, H, W) target; multiclass a long (B, H, W)."""
        if self.binary:
            return torch.where(mask == IGNORE_INDEX, IGNORE_INDEX, (mask == 1).long()).unsqueeze(1).float()
        return mask

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.loss(logits, self._target(batch["mask"]))
        if self.teacher is not None:
            distill = self.teacher(batch["image"], logits, batch["mask"])
            self._log_train("train/distill", distill, len(batch["mask"]))
            loss = loss + distill
        self._log_train("train/loss", loss, len(batch["mask"]), prog_bar=True)
        return loss

    def _log_train(self, name: str, value: torch.Tensor, batch_size: int, prog_bar: bool = False) -> None:
        """`<name>_step` as this process sees it and `<name>_epoch` averaged over all processes:
        the names one on_step + on_epoch log gives, but the all-reduce (a sync under DDP) happens
        once at the epoch's end instead of every step."""
        self.log(f"{name}_step", value, on_step=True, on_epoch=False, prog_bar=prog_bar, batch_size=batch_size)
        self.log(f"{name}_epoch", value, on_step=False, on_epoch=True, prog_bar=prog_bar, sync_dist=True,
                 batch_size=batch_size)

    def _eval_step(self, split: str, batch: dict[str, Any]) -> None:
        logits = self(batch["image"])
        loss = self.loss(logits, self._target(batch["mask"]))
        self.log(f"{split}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(batch["mask"]))
        prob = line_probability(logits)
        self.metrics[split].update(prob, batch["mask"])
        if split == "test":
            self.tolerance.update(prob, batch["mask"], self.threshold)

    def _eval_epoch_end(self, split: str) -> None:
        values = line_scores(self.metrics[split].compute(), self.threshold)
        if split == "test":
            values.update(self.tolerance.compute())
            self.tolerance.reset()
        for name, value in values.items():
            self.log(f"{split}/{name}", value, prog_bar=name in ("iou", "iou_tuned"))
        self.metrics[split].reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.train_cfg
        groups = [{"params": list(self.model.parameters())}]
        if self.templates is not None:  # their size is what pruning judges: no weight decay
            groups.append({"params": list(self.templates.parameters()), "weight_decay": 0.0})
        optimizers = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        else:
            optimizer = optimizers[cfg.optimizer](groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return {"optimizer": optimizer}
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
