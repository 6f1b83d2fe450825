"""The round_to study (issue 15 item 3): which channel multiple should pruned widths keep?

HQS-L0 at round_to null, 8 and 16 (the study ran them as `bench.variants`), from the PLDU benchmark's
current records and the models under --work; each seed's final models are exported and timed
here with ONNX Runtime (batch 1, H x W 384 x 544, 2 threads), interleaved with that seed's
dense model, so every speed-up is a paired ratio from one run. The default is the round_to
with the lowest median measured latency whose val score stays within 0.5 point of round_to
null's at every target: chosen on val; test is reported, never used.

    python -m bench.round_to --work bench/work     # run alone on the machine; writes bench/results/round_to.*
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path
from typing import Any

from bench.pldu import Benchmark, open_records, preset_arguments
from bench.records import environment
from bench.stats import mean_std, paired_bca
from bench.tables import write_results
from pipeline.scoring import scores

METHOD = "hqs_l0"
ROUND_TO = (None, 8, 16)  # the arms compared; None: the preset's prune.round_to, null in the study
WITHIN = 0.005  # "within 0.5 point" of round_to null's val score
SIZE = (384, 544)


def runs_of(b: Benchmark) -> dict[int, dict[str, Any]]:
    """Per seed: its dense record and {(target, round_to): (record, model folder)}, current only."""
    found = {}
    for seed in b.bench.seeds:
        name, inputs, dense_model = b.dense_spec(seed)
        dense = b.store.current(name, inputs)
        if dense is None:
            raise SystemExit(f"{name}: no current record; run bench.pldu first")
        arms = {}
        for target in b.bench.macs_reductions:
            for round_to in ROUND_TO:
                options = {"round_to": round_to} if round_to else None
                name, inputs, model = b.pruned_spec(seed, dense, METHOD, target, options)
                if (record := b.store.current(name, inputs)) is None:
                    raise SystemExit(f"{name}: no current record; run bench.pldu with bench.variants "
                                     f"{{{METHOD}: [{{round_to: 8}}, {{round_to: 16}}]}} and prune.round_to null")
                arms[target, round_to] = (record, model)
        found[seed] = {"dense": (dense, dense_model), "arms": arms}
    return found


def time_seed(dense_model: Path, arms: dict[tuple, tuple], threads: int, rounds: int) -> dict[tuple, dict]:
    """Median ms and paired speed-up over the dense model of every arm's final model, exported
    with dynamic axes as the export stage ships them (the form the study's figures were timed in)."""
    from pipeline.artifact import load_model
    from pipeline.speed import time_as_onnx

    folders = {"dense": dense_model, **{key: folder for key, (_, folder) in arms.items()}}
    return time_as_onnx({key: load_model(folder) for key, folder in folders.items()}, "dense", *SIZE, threads,
                        rounds, dynamic=True, desc="timing")


def summarise(found: dict[int, dict], timed: dict[int, dict], n_resamples: int) -> dict[str, Any]:
    """Rows per (target, round_to) and the chosen default."""
    rows = []
    keys = sorted(next(iter(found.values()))["arms"], key=lambda k: (k[0], k[1] or 0))
    for target, round_to in keys:
        runs = [found[s]["arms"][target, round_to][0] for s in found]
        nulls = [found[s]["arms"][target, None][0] for s in found]
        row = {"macs_reduction": target, "round_to": round_to, "seeds": list(found),
               "val_score": mean_std([r["val_score"] for r in runs]),
               "test_iou": mean_std([float(scores(r["test_counts"])["iou"]) for r in runs]),
               "achieved_reduction": mean_std([r["achieved_reduction"] for r in runs]),
               "median_ms": statistics.median(timed[s][target, round_to]["median_ms"] for s in found),
               "speedup": statistics.median(timed[s][target, round_to]["speedup"] for s in found),
               "per_seed_ms": [round(timed[s][target, round_to]["median_ms"], 2) for s in found]}
        if round_to is not None:
            row["test_iou_vs_null"] = paired_bca([r["test_counts"] for r in runs],
                                                 [r["test_counts"] for r in nulls], "iou", n_resamples)
            row["val_vs_null"] = row["val_score"]["mean"] - mean_std([r["val_score"] for r in nulls])["mean"]
        rows.append(row)
    dense_ms = statistics.median(timed[s]["dense"]["median_ms"] for s in found)
    return {"rows": rows, "dense_ms": dense_ms, "choice": choose(rows)}


def choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round_to within WITHIN of null's val score at every target with the lowest summed
    median latency over the targets."""
    candidates = sorted({r["round_to"] for r in rows}, key=lambda v: v or 0)
    eligible = [c for c in candidates if all(r.get("val_vs_null", 0.0) >= -WITHIN for r in rows if r["round_to"] == c)]
    latency = {c: sum(r["median_ms"] for r in rows if r["round_to"] == c) for c in eligible}
    best = min(eligible, key=latency.get)
    return {"round_to": best, "eligible": eligible, "summed_median_ms": latency,
            "rule": f"lowest summed median latency among round_to whose mean val score is within {WITHIN} "
                    f"of round_to null's at every target"}


def markdown(result: dict[str, Any]) -> str:
    """The study as a table and the decision."""
    lines = ["# round_to study: HQS-L0 widths the kernels like (issue 15 item 3)", "",
             f"Commit {result['commit']}{' (dirty)' if result['dirty'] else ''}; ONNX Runtime, batch 1, "
             f"{SIZE[0]}x{SIZE[1]}, {result['threads']} threads, {result['rounds']} interleaved rounds per seed; "
             f"1-min load average {result['load_average'][0]:.2f} before, {result['load_average'][1]:.2f} after; "
             f"{result['machine']['cpu']} ({result['machine']['vnni']}).", "",
             f"Dense: median {result['dense_ms']:.1f} ms. Seeds {result['rows'][0]['seeds']}; val and test IoU "
             "mean ± sd over seeds; test IoU difference against round_to null with its paired BCa 95 % interval "
             "over the test images (seeds pooled).", "",
             "| target | round_to | val score | Δ val vs null | test IoU | Δ test IoU vs null [95 %] | median ms "
             "| speed-up | ms per seed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        d = r.get("test_iou_vs_null")
        diff = "" if d is None else f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        dval = f"{r['val_vs_null']:+.4f}" if "val_vs_null" in r else ""
        per_seed = ", ".join(f"{v:.1f}" for v in r["per_seed_ms"])
        lines.append(f"| -{r['macs_reduction']:.0%} | {r['round_to'] or 'null'} | {r['val_score']['mean']:.3f} ± "
                     f"{r['val_score']['std']:.3f} | {dval} | {r['test_iou']['mean']:.3f} ± {r['test_iou']['std']:.3f} "
                     f"| {diff} | {r['median_ms']:.1f} | {r['speedup']:.2f}x | {per_seed} |")
    choice = result["choice"]
    lines += ["", f"**Default: round_to {choice['round_to'] or 'null'}** ({choice['rule']}; eligible: "
                  f"{', '.join(str(c or 'null') for c in choice['eligible'])})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Time the study's models and write bench/results/round_to.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    preset_arguments(p)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default: 2)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds per seed (default: 20)")
    args = p.parse_args(argv)
    b = open_records(args)
    found = runs_of(b)
    load_before = os.getloadavg()[0]
    timed = {seed: time_seed(f["dense"][1], f["arms"], args.threads, args.rounds) for seed, f in found.items()}
    result = {**environment(), "threads": args.threads, "rounds": args.rounds,
              "load_average": [load_before, os.getloadavg()[0]], **summarise(found, timed, b.bench.bootstrap)}
    write_results(args.out, "round_to", result, markdown(result))


if __name__ == "__main__":
    main()
