"""The sim2real benchmark's arms (issue 18): what one run trains and what its record holds.

`synthetic_run` trains on the synthetic set with pipeline.pretrain (the baseline stage's own
pretraining); `real_run` trains on the prepared PLDU data, from scratch or from the
synthetic arm's model. Checkpoints are selected on a val split only (the synthetic arm's on
synthetic val); every arm's threshold is tuned on PLDU val. Each returns the record body
(JSON-ready): bench/sim2real.py names, hashes and stores it; models stay under the work folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.dense import samples_per_epoch
from pipeline.artifact import load_model, save_model
from pipeline.config import BaseCfg, TrainCfg
from pipeline.data.datamodule import SegmentationData
from pipeline.module import SegmentationModule
from pipeline.pretrain import pretrain_variants
from pipeline.scoring import COUNTS, split_counts
from pipeline.selection import SCORE
from pipeline.study import Variant
from pipeline.train import FitResult, describe, evaluate, fit

SPLITS = ("train", "val", "test")


def steps_per_epoch(data: Path, train: TrainCfg) -> int:
    """Optimiser steps per epoch on a prepared set (the loader drops the last partial batch)."""
    return max(1, samples_per_epoch(data, train) // train.batch_size)


def counts(model: Any, data: Path, threshold: float) -> dict[str, Any]:
    """Per-image counts at `threshold`: the test split, and every image of every split
    (PLDU's 120). The summary reports the latter only for the arm that never trained on PLDU
    (bench/sim2real_summary.py `UNSEEN`): the others trained and selected on train and val."""
    tables = {split: split_counts(model, data, threshold, split) for split in SPLITS}
    every = {key: [value for split in SPLITS for value in tables[split][key]] for key in ("names", *COUNTS)}
    return {"test_counts": tables["test"], "all_counts": every}


def _body(arm: str, seed: int, result: FitResult, data: Path, seconds: float, epochs: int, steps: int
          ) -> dict[str, Any]:
    """The fields every arm's record holds."""
    return {"arm": arm, "seed": seed, "metrics": result.metrics, "threshold": result.threshold,
            "val_score": result.metrics[SCORE], "epochs": epochs, "steps": steps, "seconds": seconds,
            **counts(result.module.model, data, result.threshold)}


def synthetic_run(sections: dict[str, Any], synthetic: Path, real: Path, folder: Path, seed: int) -> dict[str, Any]:
    """Train on the synthetic set alone (`pretrain` settings: epochs, lr), keep the best
    checkpoint by the synthetic val score, tune its threshold on the real val split and
    score the real images; the model goes to folder/model."""
    model_cfg, train, trainer = sections["model"], sections["train"], sections["trainer"]
    pretrain, base = sections["pretrain"], BaseCfg(seed=seed, towers=sections["base"].towers)
    started = time.time()
    (ready,), record = pretrain_variants([Variant("synthetic", model_cfg, train)], pretrain, base, trainer,
                                         synthetic, folder / "logs")
    seconds = time.time() - started
    module = SegmentationModule(model_cfg.model_dump(), train.model_dump(), base.num_classes, model=ready.init)
    result = evaluate(module, SegmentationData(real, train, seed), trainer)  # the threshold: real val
    synthetic_train = TrainCfg.model_validate({**train.model_dump(), "epochs": pretrain.epochs,
                                               "lr": pretrain.lr or train.lr})
    save_model(ready.init, folder / "model", describe(model_cfg, base.num_classes, result, train=synthetic_train,
                                                      cost_size=train.crop_size))
    run = record["runs"]["synthetic"]
    body = _body("synthetic", seed, result, real, seconds, run["epochs"],
                 run["epochs"] * steps_per_epoch(synthetic, synthetic_train))
    return {**body, "synthetic_metrics": run["metrics"], "synthetic_threshold": run["threshold"]}


def real_run(arm: str, sections: dict[str, Any], real: Path, folder: Path, seed: int, epochs: int,
             start: Path | None = None) -> dict[str, Any]:
    """Train `epochs` epochs on the real data, from scratch or from the model in `start`
    (then `start_steps` counts the steps that model took); selection and threshold on val."""
    model_cfg, trainer, num_classes = sections["model"], sections["trainer"], sections["base"].num_classes
    train = TrainCfg.model_validate({**sections["train"].model_dump(), "epochs": epochs})
    init = load_model(start)[0] if start is not None else None
    started = time.time()
    result = fit(model_cfg, train, trainer, real, folder / "logs", seed, num_classes, model=init)
    seconds = time.time() - started
    save_model(result.module.model, folder / "model", describe(model_cfg, num_classes, result, train=train,
                                                               cost_size=train.crop_size))
    return _body(arm, seed, result, real, seconds, result.epochs, result.epochs * steps_per_epoch(real, train))
