"""tail.{json,md}: the tail study's records (bench/tail.py) against each seed's control."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.records import ROOT, RecordStore, environment
from bench.stats import mean_std, paired_bca
from bench.tail import MIN_SPEEDUP, latency_inputs, tail_spec
from bench.tail_models import REFERENCE
from pipeline.scoring import scores


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
        d = r.get("iou_vs_control")
        diff = "" if d is None else f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        fig = {k: f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}" if k in r else "-" for k in ("val_score", "iou", "tol_f1")}
        verdict = {True: "yes", False: "no", None: "not trained"}[r.get("winner")]
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
    result = {"config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config),
              **environment(), "size": latency["size"], "threads": latency["threads"], "rounds": latency["rounds"],
              "timed_on": latency["machine"]["cpu"], "within": b.bench.within,
              "rows": tail_rows(b, store, latency)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "tail.json").write_text(json.dumps(result, indent=1, default=str))
    text = markdown(result)
    (out / "tail.md").write_text(text)
    print(text)
    return result
