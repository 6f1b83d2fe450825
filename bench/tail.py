"""Issue 15's tail study: cheaper full-resolution tails, in measured milliseconds and test IoU.

Pruning cannot reach the tail: the last decoder block and the segmentation head run at the
full image size and keep their cost whatever the encoder loses. Each tail in `bench.tails`
is smp decoder options over the preset's (the last blocks' widths, the upsampling mode)
plus two head options smp fixes: `head_kernel_size` (smp: 3) and `head_upsampling: 2` (the
last, full-resolution decoder block dropped and the head predicting at half resolution,
upsampled bilinearly). The head options are surgery (bench/tail_models.py), not yet a
`model` option of the pipeline: the PLDU benchmark's records hash the pipeline code they
ran, and a tail that wins becomes a baseline candidate once those records are complete.
Each tail is measured two ways:

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
from typing import Any

from bench.pldu import Benchmark, open_records, preset_arguments
from bench.records import RecordStore, code_hash, config_hash, weights_hash
from bench.tail_models import ROUNDS, SIZE, THREADS, tail_run, time_tails

MIN_SPEEDUP = 1.05  # a tail that buys less than 5 % is not worth a candidate: its accuracy is not trained
RUN_CODE = "bench.tail_models"  # what a record's code hash covers


def tail_spec(b: Benchmark, dense: dict[str, Any], tail: str) -> tuple[str, dict[str, str]]:
    """A tail run's record name and inputs (the seed's dense model, the sections it reads)."""
    inputs = b.inputs(RUN_CODE, dense["model_hash"], ("model", "train", "trainer", "prune", "finetune"),
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
    body = tail_run(b.sections, b.data, b.dense_spec(seed)[2], folder, seed, b.bench.tails[tail])
    return store.save(name, inputs, {**body, "tail": tail, "model_hash": weights_hash(folder / "model")})


def latency_inputs(b: Benchmark) -> dict[str, str]:
    """What the tails' timing depends on: this code, the preset's model and the tails (the
    machine is recorded in it, not keyed, as in bench.latency)."""
    return {"code": code_hash(RUN_CODE),
            "config": config_hash([b.sections["model"].model_dump(), b.bench.tails, SIZE, THREADS, ROUNDS])}


def latency_record(b: Benchmark, store: RecordStore) -> dict[str, Any]:
    """The tails' timing (tail_models.time_tails): the current record, else timed now."""
    if (record := store.current("latency", inputs := latency_inputs(b))) is not None:
        return record
    return store.save("latency", inputs, time_tails(b.sections["model"], b.bench.tails))


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
