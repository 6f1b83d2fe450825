"""prune(): a dense model folder in, a physically pruned model and its record out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from pipeline.artifact import load_model
from pipeline.card import ModelCard, TrainingData
from pipeline.config import FinetuneCfg, PruneCfg, TrainCfg, TrainerCfg
from pipeline.data.datamodule import SegmentationData
from pipeline.epoch_progress import epoch_lines
from pipeline.errors import PipelineError
from pipeline.losses import Distiller
from pipeline.measure import macs_and_params
from pipeline.module import SegmentationModule
from pipeline.pruning.costs import Target, TargetPlan
from pipeline.pruning.method import PruneContext, calibration_loader
from pipeline.pruning.methods import saliency_gap, tied_share
from pipeline.pruning.registry import create_method
from pipeline.pruning.removal import (
    check_achieved,
    check_reachable,
    fold_and_remove,
    recalibrate_bn,
    removed_channels,
    val_score,
    zero_dropped,
)
from pipeline.pruning.templates import attach_templates
from pipeline.resume import ResumeStore
from pipeline.train import evaluate, fit


def conv_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv, by layer name (the channels-per-layer figure)."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def sparsify_train_cfg(card: ModelCard, cfg: PruneCfg) -> TrainCfg:
    """The dense model's training config with the sparsification budget: constant lr (the
    proximal pull is scaled by it), no early stopping."""
    trained = card.train.model_dump() if card.train else {}
    return TrainCfg.model_validate({**trained, "epochs": cfg.epochs, "lr": cfg.lr, "scheduler": "none",
                                    "early_stopping_patience": 0})


def prune(dense: Path, data: Path, method: str, target: float | Target, cfg: PruneCfg, trainer: TrainerCfg,
          seed: int, logs: Path, resume: ResumeStore | None = None, plan: TargetPlan | None = None
          ) -> tuple[nn.Module, ModelCard, dict[str, Any]] | None:
    """Prune the model in `dense` by `method` to `target`: a share of the MACs to remove (a
    float), or a `Target` (a latency target needs the `plan` that predicts latency,
    `latency_target.LatencyPlan`).

    Returns (pruned model, its model card, the stage record), or None on DDP ranks other
    than 0 (they help train, rank 0 writes).
    """
    target = target if isinstance(target, Target) else Target("macs_reduction", target)
    chosen = create_method(method, cfg.method_options(method))
    model, card = load_model(dense)
    if card.pruned_channels:
        raise PipelineError(f"{dense}: this model is already pruned; prune the dense model it came from")
    model_cfg, num_classes, size = card.model, card.num_classes, card.cost_size
    train = sparsify_train_cfg(card, cfg)
    dense_macs, dense_params = macs_and_params(model, size)
    dense_channels = conv_channels(model)
    L.seed_everything(seed, workers=True)
    templates = attach_templates(model, torch.zeros(1, 3, size, size))
    templates.round_to, templates.max_removed = cfg.round_to, cfg.max_layer_pruning
    reduction = target.value
    if target.latency:  # before any training: say which limit blocks the target
        if plan is None:
            raise PipelineError(f"prune: a {target.kind} target needs --latency-table: a folder written by "
                                f"pipeline.latency.layers and timed on the device by deploy/time_layers.py")
        reduction = plan.attach(templates, target)  # sets templates.cost_model
    else:
        check_reachable(templates, reduction)
    ctx = PruneContext(model, templates, cfg, chosen.options, reduction,
                       make_loader=lambda: calibration_loader(data, train, seed))
    sparsifier = chosen.sparsifier(ctx)
    lines = epoch_lines(trainer, f"{method} sparsify")
    if sparsifier is not None and fit(model_cfg, train, trainer, data, logs, seed, num_classes, model=model,
                                      callbacks=[sparsifier, *lines], keep_last=True, resume=resume,
                                      templates=templates) is None:
        return None
    started = time.monotonic()
    keep = chosen.keep(ctx)
    decision_seconds = time.monotonic() - started  # data-driven scores: their calibration passes
    effective = templates.effective_scale() if chosen.trains else None
    removed = removed_channels(templates.split(keep))
    predicted = templates.cost_model.kept(keep)  # before removal detaches the templates
    evaluation = SegmentationData(data, train)

    def score(net: nn.Module, with_templates: bool = False) -> float:
        return val_score(SegmentationModule(model_cfg.model_dump(), train.model_dump(), num_classes, model=net,
                                            templates=templates if with_templates else None), evaluation, trainer)

    masking = None
    if chosen.trains and not chosen.recalibrate:  # its dropped templates are near 0: make them exactly 0
        masking = {"before_zeroing": score(model, with_templates=True)}
        zero_dropped(templates, keep)
        masking["after_zeroing"] = score(model, with_templates=True)
    pruned = fold_and_remove(model, templates, templates.split(keep))
    macs, params = macs_and_params(pruned, size)
    macs_reduction = target.value if not target.latency else round(1 - macs / dense_macs, 4)
    if not target.latency:
        check_achieved(1 - macs / dense_macs, macs_reduction)
    module = SegmentationModule(model_cfg.model_dump(), train.model_dump(), num_classes, model=pruned)
    after = raw = evaluate(module, evaluation, trainer)
    if chosen.recalibrate:  # the removed channels carried signal: the later BNs' statistics moved
        recalibrate_bn(pruned, data, train, seed, trainer)
        after = evaluate(module, evaluation, trainer)
    record = {
        "method": method, "macs_reduction": macs_reduction, "achieved_reduction": 1 - macs / dense_macs,
        "sparsify_epochs": cfg.epochs if chosen.trains else 0, "budget_epochs": cfg.epochs,
        "dense": {"gmacs": dense_macs / 1e9, "mparams": dense_params / 1e6, **card.metrics},
        "pruned": {"gmacs": macs / 1e9, "mparams": params / 1e6},
        "after_removal_raw": raw.metrics, "after_removal": after.metrics, "recalibrated": chosen.recalibrate,
        "cost_size": size,
        "channels": {name: [n, kept] for (name, n), kept in zip(dense_channels.items(),
                                                                 conv_channels(pruned).values(), strict=True)},
        "pruned_channels": removed,
        # smallest kept / largest removed, on the score the method decided on when it decided
        "saliency_gap": None if chosen.decision_scores is None else saliency_gap(chosen.decision_scores, keep,
                                                                                chosen.decided_by_score),
        "tied_share": None if chosen.decision_scores is None else tied_share(chosen.decision_scores),
        "decision_seconds": decision_seconds,
        "target": {"kind": target.kind, "value": target.value, "predicted": predicted,
                   "unit": templates.cost_model.unit},
    }
    if target.latency:
        record["latency"] = plan.record(keep, pruned, load_model(dense)[0], card)
    if masking is not None:
        masking["after_removal"] = score(pruned)
        record["masking"] = masking
    if effective is not None:  # the template magnitudes after training, before any threshold
        record["templates"] = {"effective": [round(float(e), 6) for e in effective], "kept": keep.tolist()}
    pruned_card = card.updated(threshold=after.threshold, metrics=after.metrics, method=method,
                               macs_reduction=macs_reduction, sparsify_epochs=record["sparsify_epochs"],
                               budget_epochs=cfg.epochs, pruned_channels=removed)
    return pruned, pruned_card, record


def finetune(pruned: Path, dense: Path, data: Path, cfg: FinetuneCfg, trainer: TrainerCfg, seed: int,
             logs: Path, resume: ResumeStore | None = None) -> tuple[nn.Module, ModelCard, dict[str, Any]] | None:
    """Train a pruned model with the dense model's loss and crops to recover accuracy.

    Equal budgets: a method that spent fewer than `budget_epochs` sparsifying (the one-shot
    ones spend none) gets the difference as extra epochs here. With `distill: logit` the
    dense model in `dense` is the teacher. None on DDP ranks other than 0.
    """
    model, card = load_model(pruned)
    extra = card.budget_epochs - card.sparsify_epochs
    trained = card.train.model_dump() if card.train else {}
    train = TrainCfg.model_validate({**trained, "epochs": cfg.epochs + extra, "lr": cfg.lr})
    options = {}
    if cfg.distill == "logit":
        teacher, _ = load_model(dense)
        options["teacher"] = Distiller(teacher, cfg.distill_weight, cfg.distill_temperature)
    result = fit(card.model, train, trainer, data, logs, seed, card.num_classes, model=model, resume=resume,
                 callbacks=epoch_lines(trainer, f"{card.method or 'pruned'} finetune"), **options)
    if result is None:
        return None
    macs, params = macs_and_params(result.module.model, card.cost_size)
    row = {**result.metrics, "gmacs": macs / 1e9, "mparams": params / 1e6, "threshold": result.threshold}
    record = {"method": card.method, "macs_reduction": card.macs_reduction, "epochs": train.epochs,
              "epochs_trained": result.epochs, "extra_epochs": extra, "distill": cfg.distill,
              "after_removal": card.metrics, "final": row}
    return result.module.model, card.updated(threshold=result.threshold, metrics=result.metrics,
                                             finetune_epochs=train.epochs,
                                             training_data=TrainingData.read(data)), record
