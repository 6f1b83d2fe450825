"""The tail study's models and runs (bench/tail.py keeps the records): head surgery smp does
not offer, the dense model transplanted into a tail, one training run, the timing of all
tails. Nothing here imports the benchmark's bookkeeping (bench.pldu), so the records' code
hash covers what a run runs and nothing else."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import ModelCfg

HEAD_KEYS = ("head_kernel_size", "head_upsampling")
REFERENCE = "preset"  # the preset's own tail, in the timing
SIZE = (384, 544)  # H x W, as bench.device_table times
THREADS, ROUNDS = 2, 30


class _Skip(nn.Module):
    """A dropped decoder block: passes its input through."""

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return x


def set_head(model: nn.Module, head_kernel_size: int = 3, head_upsampling: int = 1) -> None:
    """Give an smp Unet's head a `head_kernel_size` conv; with `head_upsampling` 2, drop the
    last decoder block and predict at half resolution, upsampled bilinearly."""
    import segmentation_models_pytorch as smp

    if head_kernel_size < 1 or head_kernel_size % 2 == 0 or head_upsampling not in (1, 2):
        raise SystemExit(f"bench.tails: head_kernel_size {head_kernel_size} must be odd, head_upsampling "
                         f"{head_upsampling} 1 or 2")
    head = model.segmentation_head[0]
    channels = head.in_channels
    if head_upsampling == 2:
        model.decoder.blocks[-1] = _Skip()
        channels = model.decoder.blocks[-2].conv2[0].out_channels
    model.segmentation_head = smp.base.SegmentationHead(channels, head.out_channels, head_kernel_size,
                                                        upsampling=head_upsampling)


def tail_model(model_cfg: ModelCfg, options: dict[str, Any], num_classes: int = 2) -> tuple[nn.Module, ModelCfg]:
    """The tail's model (fresh weights) and the smp part of its config: `options` are smp
    decoder options over `model_cfg`'s, plus HEAD_KEYS."""
    from pipeline.models import create_model

    smp_options = {**model_cfg.decoder_options(), **{k: v for k, v in options.items() if k not in HEAD_KEYS}}
    cfg = model_cfg.model_copy(update={"decoder": {model_cfg.arch: smp_options}})
    model = create_model(cfg, num_classes)
    set_head(model, **{k: v for k, v in options.items() if k in HEAD_KEYS})
    return model, cfg


def transplant(dense: nn.Module, variant: nn.Module) -> list[str]:
    """Copy into `variant` every tensor of `dense` with the same name and shape; the names of
    the variant's tensors left as initialised."""
    own, source = variant.state_dict(), dense.state_dict()
    shared = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    variant.load_state_dict(shared, strict=False)
    return sorted(k for k in own if k not in shared)


def tail_run(sections: dict[str, Any], data: Path, dense_folder: Path, folder: Path, seed: int,
             options: dict[str, Any]) -> dict[str, Any]:
    """The dense model in `dense_folder` transplanted into the tail `options` and trained as
    the control is (`prune.epochs + finetune.epochs` at the fine-tuning lr, selected on the
    val score); its weights go to folder/model/model.pt. The record body."""
    from bench.dense import scored, training_macs
    from pipeline.artifact import load_model
    from pipeline.config import TrainCfg
    from pipeline.measure import macs_and_params
    from pipeline.train import fit

    dense, card = load_model(dense_folder)
    model, cfg = tail_model(sections["model"], options, card.num_classes)
    fresh = transplant(dense, model)
    epochs = sections["prune"].epochs + sections["finetune"].epochs
    train = TrainCfg.model_validate({**card.train.model_dump(), "epochs": epochs, "lr": sections["finetune"].lr})
    started = time.time()
    result = fit(cfg, train, sections["trainer"], data, folder / "logs", seed, card.num_classes, model=model)
    (folder / "model").mkdir(parents=True, exist_ok=True)  # weights only: load_model cannot rebuild the head
    torch.save(result.module.model.state_dict(), folder / "model" / "model.pt")
    macs, params = macs_and_params(result.module.model, card.cost_size)
    return {"arm": "tail", "seed": seed, "options": options, "fresh": fresh, **scored(result, data, folder / "logs"),
            "gmacs": macs / 1e9, "mparams": params / 1e6, "seconds": time.time() - started,
            "train_tmacs": training_macs(macs / 1e9, data, train, result.epochs)}


def time_tails(model_cfg: ModelCfg, tails: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every tail and the preset's (REFERENCE), untrained (weights do not change the time),
    exported at SIZE and timed interleaved: per tail its median ms, paired speed-up and GMACs."""
    from pipeline.measure import macs_and_params
    from pipeline.models import create_model
    from pipeline.speed import time_as_onnx

    models = {REFERENCE: (create_model(model_cfg).eval(), None),
              **{tail: (tail_model(model_cfg, options)[0].eval(), None) for tail, options in tails.items()}}
    timed = time_as_onnx(models, REFERENCE, *SIZE, THREADS, rounds=ROUNDS, desc="tails")
    rows = {name: {"median_ms": timed[name]["median_ms"], "speedup": timed[name]["speedup"],
                   "gmacs": macs_and_params(model, *SIZE)[0] / 1e9} for name, (model, _) in models.items()}
    return {"size": SIZE, "threads": THREADS, "rounds": ROUNDS, "rows": rows}
