"""The issue-15 latency benchmark: measured milliseconds of the PLDU benchmark's models, FP32 and INT8.

From the PLDU benchmark's current records and their models under --work, per seed: the
dense model, HQS-L0 at each MAC target, every latency arm (`bench.latency_targets` x
`latency_methods`) and HQS-L0 at the MAC target matched to its 1/4 latency arm
(bench.matched). Each model is exported to FP32 ONNX at 384x544 and quantised to INT8 by
the export stage's checked quantisation (pipeline.int8: accepted when its val IoU is at
most `quantize.max_iou_drop` below the FP32 file's, else again with the first convolution
and the head in FP32, else no INT8 model); a seed's files are all timed interleaved (2
threads), so every speed-up is a paired ratio from one run; test IoU is counted in ONNX
Runtime for both formats. One record per seed (bench/results/latency/seed<N>.json), keyed
by its models' hashes, this code and this machine: run it in slices like bench.pldu.

    python -m bench.latency --work bench/work   # alone on the machine: bench/results/latency.{json,md}
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import matched
from bench.device_table import SIZE
from bench.latency_run import DENSE, measure_seed
from bench.pldu import Benchmark, open_records, preset_arguments
from bench.records import RecordStore, code_hash, config_hash
from pipeline.pruning.costs import Target


def arms_of(b: Benchmark, seed: int) -> dict[str, tuple[dict[str, Any], Path]]:
    """{arm: (current record, final model folder)} of one seed: dense, hqs_l0 at each MAC
    target, the latency arms, the matched arm (`matched.ARM`); SystemExit naming the first
    one missing."""
    name, inputs, dense_model = b.dense_spec(seed)
    dense = b.store.current(name, inputs)
    if dense is None:
        raise SystemExit(f"{name}: no current record; run bench.pldu first")
    tune = b.store.current(*b.dense_spec(b.bench.tune_seed)[:2])  # its runs chose the tuned options
    dense_of = {seed: dense, **({} if tune is None else {b.bench.tune_seed: tune})}
    specs = [(None, "hqs_l0", target, None) for target in b.bench.macs_reductions]
    specs += [(None, method, Target("latency_reduction", share), b.tuned_options(method, dense_of))
              for share in b.bench.latency_targets for method in b.bench.latency_methods]
    if matched.METHOD in b.bench.latency_methods:  # HQS-L0 at the MAC target of the same measured latency
        options = b.tuned_options(matched.METHOD, dense_of)
        reduction = matched.matched_reduction(b, seed, options, search=False)
        if reduction is None:
            raise SystemExit(f"seed{seed}/matched-{matched.METHOD}: no current record; run bench.pldu first")
        specs.append((matched.ARM, matched.METHOD, reduction, options))  # its target differs per seed
    arms = {DENSE: (dense, dense_model)}
    for label, method, target, options in specs:
        name, inputs, model = b.pruned_spec(seed, dense, method, target, options)
        if (record := b.store.current(name, inputs)) is None:
            raise SystemExit(f"{name}: no current record; run bench.pldu first")
        arms[label or name.split("/", 1)[1]] = (record, model)
    return arms


def seed_record(b: Benchmark, store: RecordStore, seed: int, threads: int, rounds: int, measure: bool = True
                ) -> dict[str, Any] | None:
    """The seed's record in `store`, measured again (unless `measure` is False) when its
    models, this code or the timing settings changed. The machine is recorded, not keyed:
    the summary says where each seed was timed."""
    try:
        arms = arms_of(b, seed)
    except SystemExit as missing:
        if measure:
            raise
        print(f"seed{seed} left out of the summary: {missing}")  # a seed whose bench.pldu chain is not done
        return None
    inputs = {"code": code_hash("bench.latency_run"), "data": b.data_hash,
              "start": config_hash({arm: record["model_hash"] for arm, (record, _) in arms.items()}),
              "config": config_hash([threads, rounds, SIZE])}
    name = f"seed{seed}"
    if (record := store.current(name, inputs)) is not None or not measure:
        return record
    print(f"{name}: quantising and timing {len(arms)} models", flush=True)
    body = measure_seed(arms, b.data, threads, rounds)
    body["arms"] = {arm: {"macs_reduction": record.get("macs_reduction"), "target": record.get("target"),
                          "gmacs": record.get("gmacs"), "latency": record.get("latency")}
                    for arm, (record, _) in arms.items()}
    return store.save(name, inputs, {"seed": seed, **body})


def main(argv: list[str] | None = None) -> None:
    """Measure (or reuse) every seed's record, then write bench/results/latency.{json,md}."""
    from bench.latency_summary import write_summary

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    preset_arguments(p)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default: 2)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds per seed (default: 20)")
    p.add_argument("--summary-only", action="store_true", help="only re-aggregate the current records")
    args = p.parse_args(argv)
    b = open_records(args)
    store = RecordStore(args.out / "latency")
    records = {seed: seed_record(b, store, seed, args.threads, args.rounds, measure=not args.summary_only)
               for seed in b.bench.seeds}
    write_summary({seed: r for seed, r in records.items() if r is not None}, args.out, args.config, b.bench.bootstrap)


if __name__ == "__main__":
    main()
