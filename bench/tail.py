"""Issue 15's tail study: cheaper full-resolution tails, in measured milliseconds and test IoU.

Pruning cannot reach the tail: the last decoder block and the segmentation head run at the
full image size and keep their cost whatever the encoder loses. Each tail in `bench.tails`
is smp decoder options over the preset's (the last blocks' widths, the upsampling mode)
plus two head options smp fixes: `head_kernel_size` (smp: 3) and `head_upsampling: 2` (the
last, full-resolution decoder block dropped and the head predicting at half resolution,
upsampled bilinearly). The head options are surgery done here, not yet a `model` option of
the pipeline: the PLDU benchmark's records hash the pipeline code they ran, and a tail that
wins becomes a baseline candidate once those records are complete. Each tail is measured
two ways:

- latency: every tail and the preset's own architecture exported at 384x544 (static input)
  and timed interleaved on this machine (2 threads): medians and paired speed-ups;
- accuracy: per seed, the PLDU benchmark's trained dense model transplanted into the tail
  (every tensor whose name and shape the tail shares is copied; the rest starts fresh, and
  the record lists it), then trained as the control is, `prune.epochs + finetune.epochs` at
  the fine-tuning lr, selected on the val score. The control is the comparison: same dense
  start, same epochs.

Only tails at least MIN_SPEEDUP times as fast as the preset's are trained (timing runs
first). A trained tail whose val score stays within `bench.within` of the control's, on
every seed, is a winner: offer it as a `baseline.candidates` entry.

    OMP_NUM_THREADS=1 python -m bench.tail --work bench/work   # after bench.pldu's dense runs and controls
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.device_table import SIZE
from bench.pldu import Benchmark, open_records, preset_arguments
from bench.records import RecordStore, code_hash, config_hash, weights_hash
from pipeline.config import ModelCfg

REFERENCE = "preset"  # the preset's own tail, in the latency record
THREADS, ROUNDS = 2, 30
MIN_SPEEDUP = 1.05  # a tail that buys less than 5 % is not worth a candidate: its accuracy is not trained
HEAD_KEYS = ("head_kernel_size", "head_upsampling")


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


def tail_model(b: Benchmark, tail: str, num_classes: int = 2) -> tuple[nn.Module, ModelCfg]:
    """The tail's model (fresh weights) and the smp part of its config."""
    from pipeline.models import create_model

    options = b.bench.tails[tail]
    model_cfg: ModelCfg = b.sections["model"]
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


def tail_run(b: Benchmark, seed: int, tail: str, folder: Path) -> dict[str, Any]:
    """The seed's dense model in `tail`, trained like the control; the record body."""
    from bench.dense import scored, training_macs
    from pipeline.artifact import load_model
    from pipeline.config import TrainCfg
    from pipeline.measure import macs_and_params
    from pipeline.train import fit

    dense, card = load_model(b.dense_spec(seed)[2])
    model, cfg = tail_model(b, tail, card.num_classes)
    fresh = transplant(dense, model)
    epochs = b.sections["prune"].epochs + b.sections["finetune"].epochs
    train = TrainCfg.model_validate({**card.train.model_dump(), "epochs": epochs, "lr": b.sections["finetune"].lr})
    started = time.time()
    result = fit(cfg, train, b.sections["trainer"], b.data, folder / "logs", seed, card.num_classes, model=model)
    (folder / "model").mkdir(parents=True, exist_ok=True)  # weights only: load_model cannot rebuild the head
    torch.save(result.module.model.state_dict(), folder / "model" / "model.pt")
    macs, params = macs_and_params(result.module.model, card.cost_size)
    return {"arm": "tail", "tail": tail, "seed": seed, "options": b.bench.tails[tail], "fresh": fresh,
            **scored(result, b.data, folder / "logs"), "gmacs": macs / 1e9, "mparams": params / 1e6,
            "seconds": time.time() - started, "train_tmacs": training_macs(macs / 1e9, b.data, train, result.epochs)}


def tail_spec(b: Benchmark, dense: dict[str, Any], tail: str) -> tuple[str, dict[str, str]]:
    """A tail run's record name and inputs (the seed's dense model, the sections it reads)."""
    inputs = b.inputs("bench.tail", dense["model_hash"], ("model", "train", "trainer", "prune", "finetune"),
                      b.bench.tails[tail], dense["seed"])
    return f"seed{dense['seed']}/tail-{tail}", inputs


def run_tail(b: Benchmark, store: RecordStore, seed: int, tail: str) -> dict[str, Any]:
    """The current record of `tail` on `seed` in `store`, else trained now (the seed's dense
    model must then be on this machine; bench.pldu trains it again otherwise)."""
    name, inputs = tail_spec(b, b.dense(seed), tail)
    if (record := store.current(name, inputs)) is not None:
        return record
    b.dense(seed, need_model=True)
    folder = b.work / name
    print(f"{time.strftime('%H:%M:%S')} {name}: running", flush=True)
    body = tail_run(b, seed, tail, folder)
    return store.save(name, inputs, {**body, "model_hash": weights_hash(folder / "model")})


def latency_record(b: Benchmark, store: RecordStore) -> dict[str, Any]:
    """Every tail and the preset's tail, untrained (weights do not change the time), exported
    at 384x544 and timed interleaved here; reused while the tails and this machine are the same."""
    from pipeline.machine import fingerprint
    from pipeline.measure import macs_and_params
    from pipeline.models import create_model
    from pipeline.speed import time_as_onnx

    inputs = {"code": code_hash("bench.tail"), "config": config_hash([b.sections["model"].model_dump(), b.bench.tails,
                                                                       SIZE, THREADS, ROUNDS, fingerprint()["cpu"]])}
    if (record := store.current("latency", inputs)) is not None:
        return record
    models = {REFERENCE: (create_model(b.sections["model"]).eval(), None),
              **{tail: (tail_model(b, tail)[0].eval(), None) for tail in b.bench.tails}}
    timed = time_as_onnx(models, REFERENCE, *SIZE, THREADS, rounds=ROUNDS, desc="tails")
    rows = {name: {"median_ms": timed[name]["median_ms"], "speedup": timed[name]["speedup"],
                   "gmacs": macs_and_params(model, *SIZE)[0] / 1e9} for name, (model, _) in models.items()}
    return store.save("latency", inputs, {"size": SIZE, "threads": THREADS, "rounds": ROUNDS, "rows": rows})


def main(argv: list[str] | None = None) -> None:
    """Time the tails, train (or reuse) each tail on each seed, write bench/results/tail.{json,md}."""
    from bench.tail_summary import write_summary

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    preset_arguments(p)
    p.add_argument("--tails", nargs="+", help="only these tails (default: bench.tails)")
    p.add_argument("--summary-only", action="store_true", help="only re-aggregate the current records")
    args = p.parse_args(argv)
    b = open_records(args)
    if not b.bench.tails:
        raise SystemExit(f"{args.config}: bench.tails is empty: nothing to study")
    unknown = set(args.tails or []) - set(b.bench.tails)
    if unknown:
        raise SystemExit(f"--tails: unknown {', '.join(sorted(unknown))}; the preset has {', '.join(b.bench.tails)}")
    store = RecordStore(args.out / "tail")
    if not args.summary_only:
        timed = latency_record(b, store)["rows"]
        fast = [tail for tail in args.tails or b.bench.tails if timed[tail]["speedup"] >= MIN_SPEEDUP]
        print(f"tails at least {MIN_SPEEDUP}x as fast as the preset's, to train: {', '.join(fast) or 'none'}")
        for seed in b.bench.seeds:
            for tail in fast:
                run_tail(b, store, seed, tail)
    write_summary(b, store, args.out, args.config)


if __name__ == "__main__":
    main()
