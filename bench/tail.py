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
import json
import time
from pathlib import Path
from typing import Any

from bench.pldu import Benchmark, open_records, preset_arguments
from bench.records import RecordStore, code_hash, config_hash, environment, weights_hash
from bench.stats import mean_std, paired_bca
from bench.tables import interval, plus_minus, preset_name, write_results
from bench.tail_models import REFERENCE, ROUNDS, SIZE, THREADS, tail_run, time_tails
from pipeline.scoring import scores

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


def tail_rows(b: Any, store: RecordStore, latency: dict[str, Any]) -> list[dict[str, Any]]:
    """Per tail (the preset's own first, as its control): latency, GMACs at the timed size,
    val and test scores over the seeds holding both the tail's record and the control's,
    test IoU minus the control's (paired BCa over the test images) and the winner rule."""
    dense_of, controls = {}, {}
    for seed in b.bench.seeds:
        dense = b.store.current(*b.dense_spec(seed)[:2])
        if dense and (control := b.store.current(*b.control_spec(seed, dense)[:2])):
            dense_of[seed], controls[seed] = dense, control
    runs = {REFERENCE: controls}
    for tail in b.bench.tails:
        runs[tail] = {seed: r for seed in controls if (r := store.current(*tail_spec(b, dense_of[seed], tail)))}
    rows = []
    for tail, by_seed in runs.items():
        seeds = sorted(by_seed)
        timing = latency["rows"].get(tail, {})
        row = {"tail": tail, "seeds": seeds, "options": b.bench.tails.get(tail, {}), **timing,
               "ms_saved": latency["rows"][REFERENCE]["median_ms"] - timing.get("median_ms", float("nan"))}
        if seeds:
            final = [scores(by_seed[s]["test_counts"]) for s in seeds]
            row |= {"val_score": mean_std([by_seed[s]["val_score"] for s in seeds]),
                    "iou": mean_std([float(f["iou"]) for f in final]),
                    "tol_f1": mean_std([float(f["tol_f1"]) for f in final])}
        if tail != REFERENCE and seeds:
            row["val_vs_control"] = [by_seed[s]["val_score"] - controls[s]["val_score"] for s in seeds]
            row["iou_vs_control"] = paired_bca([by_seed[s]["test_counts"] for s in seeds],
                                               [controls[s]["test_counts"] for s in seeds], "iou", b.bench.bootstrap)
            row["winner"] = (len(seeds) == len(controls) and timing.get("speedup", 0) >= MIN_SPEEDUP
                             and min(row["val_vs_control"]) >= -b.bench.within)
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The table, the winners and how it was measured."""
    lines = ["# Tail study (issue 15)", "",
             f"Latency: untrained models at {result['size'][0]}x{result['size'][1]}, static ONNX export, ONNX Runtime "
             f"{result['versions'].get('onnxruntime')}, {result['threads']} threads, {result['rounds']} interleaved "
             f"rounds on {result['timed_on']}. Accuracy: each seed's PLDU dense model transplanted into the tail "
             "and trained as long as its control (the preset's tail), selected on val; test IoU minus the "
             "control's with a paired BCa 95 % interval over the test images, seeds pooled.", "",
             "| tail | GMACs | median ms | ms saved | speed-up | seeds | val score | test IoU | "
             "Δ IoU vs control [95 %] | tol. F1 | winner |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        diff = interval(r.get("iou_vs_control"))
        fig = {k: plus_minus(r.get(k)) for k in ("val_score", "iou", "tol_f1")}
        untrained = "not trained" if r.get("speedup", 0) < MIN_SPEEDUP else "no control yet"
        verdict = {True: "yes", False: "no", None: untrained}[r.get("winner")]
        winner = "control" if r["tail"] == REFERENCE else verdict
        lines.append(f"| {r['tail']} | {r.get('gmacs', 0):.2f} | {r.get('median_ms', 0):.1f} | {r['ms_saved']:.1f} | "
                     f"{r.get('speedup', 0):.2f}x | {len(r['seeds'])} | {fig['val_score']} | {fig['iou']} | {diff} | "
                     f"{fig['tol_f1']} | {winner} |")
    winners = [r for r in result["rows"] if r.get("winner")]
    lines += ["", f"Tails under {MIN_SPEEDUP}x the preset's speed are not trained (no accuracy: \"-\"). Winner "
              f"rule: at least {MIN_SPEEDUP}x and a val score within {result['within']} of the control's on every "
              "seed.", ""]
    lines += [f"- `{r['tail']}` (`{json.dumps(r['options'])}`): a baseline candidate once the head options join the "
              "pipeline's `model` section" for r in winners]
    lines += ["", "Pruning with `round_to: 16` leaves this decoder's 16-wide blocks as they are (the layer cap keeps "
              "at least one group of 16), so a pruned model saves about the same milliseconds: a larger share of its "
              "time."]
    if not winners:
        lines.append("- No tail won.")
    return "\n".join(lines) + "\n"


def write_summary(b: Any, store: RecordStore, out: Path, config: Path) -> dict[str, Any]:
    """Aggregate the current records into out/tail.{json,md}."""
    latency = store.current("latency", latency_inputs(b))
    if latency is None:
        print("no current tail timing: run python -m bench.tail")
        return {}
    result = {"config": preset_name(config),
              **environment(), "size": latency["size"], "threads": latency["threads"], "rounds": latency["rounds"],
              "timed_on": latency["machine"]["cpu"], "within": b.bench.within,
              "rows": tail_rows(b, store, latency)}
    write_results(out, "tail", result, markdown(result))
    return result


def main(argv: list[str] | None = None) -> None:
    """Time the tails, train (or reuse) each tail on each seed, write bench/results/tail.{json,md}."""
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
