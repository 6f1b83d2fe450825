"""The benchmark's dense arms: the seed's dense model, trained until early stopping ends it,
and the control, the dense model trained as many epochs more as a pruned model gets.

Each returns the record body (JSON-ready); bench/pldu.py names it and stores it with the
hashes of its inputs (bench/records.py: RecordStore, code_hash). The models stay under the
work folder (`<work>/seed<N>/dense/model` and `.../control/model`, their curves in `logs/`
beside them; large, not committed), the records are committed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.artifact import load_model, save_model
from pipeline.config import FinetuneCfg, ModelCfg, PruneCfg, TrainCfg
from pipeline.curves import dvclive_curve
from pipeline.data.datamodule import PreparedSplit, eval_transform
from pipeline.measure import macs_and_params
from pipeline.scoring import split_counts
from pipeline.selection import SCORE
from pipeline.train import FitResult, describe, fit

PASSES = 3  # training MACs per sample: forward + backward (about twice the forward)


def samples_per_epoch(data: Path, train: TrainCfg) -> int:
    """Training crops seen per epoch: the train split in whole batches (the loader drops the rest)."""
    n = len(PreparedSplit(data, "train", eval_transform()))
    return n - n % train.batch_size if n >= train.batch_size else n


def training_macs(gmacs: float, data: Path, train: TrainCfg, epochs: int) -> float:
    """Training compute in tera-MACs: forward GMACs at the crop size x samples seen x 3."""
    return gmacs * samples_per_epoch(data, train) * epochs * PASSES / 1e3


def scored(result: FitResult, data: Path, logs: Path) -> dict[str, Any]:
    """What every arm records of a finished fit: val/test figures, the val-score curve, the
    per-image test counts at the tuned threshold."""
    curve = dvclive_curve(logs, SCORE)
    return {"metrics": result.metrics, "threshold": result.threshold, "val_score": result.metrics[SCORE],
            "val_curve": curve, "epochs": result.epochs,
            "test_counts": split_counts(result.module.model, data, result.threshold)}


def dense_run(sections: dict[str, Any], data: Path, folder: Path, seed: int) -> dict[str, Any]:
    """Train the seed's dense model from scratch (folder/model); early stopping on the val
    score ends it, and `cap_reached` says when the epoch cap did instead."""
    model_cfg: ModelCfg = sections["model"]
    train: TrainCfg = sections["train"]
    started = time.time()
    result = fit(model_cfg, train, sections["trainer"], data, folder / "logs", seed, sections["base"].num_classes)
    size = train.crop_size
    save_model(result.module.model, folder / "model", describe(model_cfg, sections["base"].num_classes, result,
                                                               train=train, cost_size=size))
    macs, params = macs_and_params(result.module.model, size)
    body = scored(result, data, folder / "logs")
    return {"arm": "dense", "seed": seed, **body, "cap_reached": result.epochs >= train.epochs,
            "gmacs": macs / 1e9, "mparams": params / 1e6, "seconds": time.time() - started,
            "train_tmacs": training_macs(macs / 1e9, data, train, result.epochs)}


def control_run(sections: dict[str, Any], data: Path, dense_folder: Path, folder: Path, seed: int
                ) -> dict[str, Any]:
    """The dense model trained `prune.epochs + finetune.epochs` more epochs at the
    fine-tuning lr and schedule, selected by the same score: what every pruned model's extra
    training is compared with."""
    prune_cfg: PruneCfg = sections["prune"]
    finetune_cfg: FinetuneCfg = sections["finetune"]
    model, card = load_model(dense_folder)
    train = TrainCfg.model_validate({**card.train.model_dump(), "epochs": prune_cfg.epochs + finetune_cfg.epochs,
                                     "lr": finetune_cfg.lr})
    started = time.time()
    result = fit(card.model, train, sections["trainer"], data, folder / "logs", seed, card.num_classes, model=model)
    save_model(result.module.model, folder / "model", card.updated(threshold=result.threshold,
                                                                   metrics=result.metrics))
    macs, params = macs_and_params(result.module.model, card.cost_size)
    return {"arm": "control", "seed": seed, **scored(result, data, folder / "logs"), "gmacs": macs / 1e9,
            "mparams": params / 1e6, "seconds": time.time() - started,
            "train_tmacs": training_macs(macs / 1e9, data, train, result.epochs)}
