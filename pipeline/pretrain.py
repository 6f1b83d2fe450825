"""Synthetic pretraining (`pretrain` in params.yaml, off by default), read by the baseline stage.

Each baseline candidate first trains on a synthetic set from the project's own generator
(pipeline.data.sources.synthetic, usually its `wires` renderer, optionally on the user's
background photos), with the same fit() as every other training; its best checkpoint by the
synthetic val score then becomes the starting weights of the candidate's training on the
prepared (real) data. Real labelled wires are scarce; synthetic wires are free (issue 18).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import BaseCfg, PrepareCfg, TrainCfg, TrainerCfg
from pipeline.data.prepare import prepare
from pipeline.resume import ResumeStore
from pipeline.sections import PretrainCfg
from pipeline.study import Variant
from pipeline.train import fit

MANIFEST = "manifest.json"


def state_hash(model: nn.Module) -> str:
    """sha256 (16 hex digits) of a model's tensors: names, shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _settings(cfg: PretrainCfg, base: BaseCfg) -> dict[str, Any]:
    """What decides the synthetic set's bytes (the generator is seeded and reproducible)."""
    return {"synthetic": cfg.synthetic.model_dump(), "seed": base.seed, "towers": base.towers}


def _set_name(cfg: PretrainCfg, base: BaseCfg) -> str:
    """The synthetic set's folder name, keyed by what decides its bytes."""
    return "pretrain-data-" + hashlib.sha256(json.dumps(_settings(cfg, base), sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def synthetic_set(cfg: PretrainCfg, base: BaseCfg, keep_in: Path | None) -> Iterator[Path]:
    """The prepared synthetic set: in `keep_in` (the stage's resume folder, so a killed
    run finds the same files and resumes its pretraining) when given, else in a temporary
    folder removed afterwards. A kept set is reused only if made from the same settings."""
    with tempfile.TemporaryDirectory(prefix="pretrain-") as tmp:
        folder = (keep_in if keep_in is not None else Path(tmp)) / _set_name(cfg, base)
        if not (folder / MANIFEST).exists():
            prepare(PrepareCfg(source="synthetic", synthetic=cfg.synthetic), base, folder)
        yield folder


def drop_kept_set(cfg: PretrainCfg, base: BaseCfg, keep_in: Path | None) -> None:
    """Delete the kept synthetic set once the stage's outputs are written."""
    if keep_in is not None:
        shutil.rmtree(keep_in / _set_name(cfg, base), ignore_errors=True)


def pretrain_variants(variants: list[Variant], cfg: PretrainCfg, base: BaseCfg, trainer: TrainerCfg,
                      data: Path, logs: Path, resume: ResumeStore | None = None
                      ) -> tuple[list[Variant], dict[str, Any]]:
    """Train each variant on the synthetic set `data`; return the variants starting from
    those weights, and the record of what the pretraining did (per variant: epochs, tuned
    threshold, synthetic val/test figures, seconds, the hash of the weights handed on).

    On DDP ranks other than 0 fit() returns no model: their variants keep init None, and
    DDP copies rank 0's (pretrained) weights to every rank when the real training starts.
    """
    ready, runs = [], {}
    for variant in variants:
        train = TrainCfg.model_validate({**variant.train.model_dump(), "epochs": cfg.epochs,
                                         "lr": cfg.lr or variant.train.lr})
        print(f"--- pretrain {variant.name}")
        started = time.time()
        result = fit(variant.model, train, trainer, data, logs / f"pretrain-{variant.name}", base.seed,
                     base.num_classes, model=variant.init, resume=resume)
        if result is None:
            ready.append(variant)
            continue
        model = result.module.model
        runs[variant.name] = {"epochs": result.epochs, "threshold": result.threshold, "metrics": result.metrics,
                              "seconds": time.time() - started, "weights": state_hash(model)}
        ready.append(replace(variant, init=model))
    record = {"enabled": True, "epochs": cfg.epochs, "lr": cfg.lr, **_settings(cfg, base), "runs": runs}
    return ready, record
