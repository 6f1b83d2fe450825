"""latency.{json,md}: the latency benchmark's per-seed records aggregated per arm and format,
with the issue's goals checked against them (bench/latency.py makes the records)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.latency_run import DENSE
from bench.matched import ARM as MATCHED  # HQS-L0 at the MAC target of the deepest arm's latency
from bench.records import environment
from bench.stats import mean_std, paired_bca
from bench.tables import interval, preset_name, write_results
from pipeline.scoring import scores

PREFIX = "hqs_l0-latency"  # HQS-L0's latency arms; the goals' model is the deepest (the issue: 1/4 of dense)


def deepest(arms: Any) -> str | None:
    """The HQS-L0 latency arm with the largest latency cut among `arms` (names), or None."""
    found = [arm for arm in arms if arm.startswith(PREFIX)]
    return max(found, key=lambda arm: float(arm[len(PREFIX):]), default=None)


def arm_rows(records: dict[int, dict[str, Any]], n_resamples: int) -> list[dict[str, Any]]:
    """One row per (arm, format) over the seeds: median ms and paired speed-ups (medians over
    seeds), test IoU and tolerance F1 (ONNX Runtime, mean ± sd over seeds), and test IoU
    minus the dense FP32 model's (FP32 rows) or minus the same model's FP32 (INT8 rows), with
    paired BCa intervals over the test images (counts summed over the seeds)."""
    seeds = sorted(records)
    arms = list(records[seeds[0]]["rows"])
    rows = []
    for arm in arms:
        for fmt in ("fp32", "int8"):
            present = [s for s in seeds if fmt in records[s]["rows"][arm]]
            if not present:
                continue
            per_seed = [records[s]["rows"][arm] for s in present]
            counts = [r["test_counts"][fmt] for r in per_seed]
            final = [scores(c) for c in counts]
            row = {"arm": arm, "format": fmt, "seeds": present,
                   "median_ms": statistics.median(r[fmt]["median_ms"] for r in per_seed),
                   "speedup": statistics.median(r[fmt]["speedup"] for r in per_seed),
                   "iou": mean_std([float(f["iou"]) for f in final]),
                   "tol_f1": mean_std([float(f["tol_f1"]) for f in final]),
                   "int8_accepted": [records[s]["rows"][arm]["int8_check"]["accepted"] for s in seeds]}
            reference = ([records[s]["rows"][DENSE]["test_counts"]["fp32"] for s in present] if fmt == "fp32"
                         else [r["test_counts"]["fp32"] for r in per_seed])
            if arm != DENSE or fmt == "int8":
                row["iou_vs_reference"] = paired_bca(counts, reference, "iou", n_resamples)
            if fmt == "int8":
                row["x_fp32"] = statistics.median(r["int8"]["x_fp32"] for r in per_seed)
                row["kept_fp32"] = [r["int8_check"]["kept_fp32"] for r in per_seed]
            rows.append(row)
    return rows


def matched_difference(records: dict[int, dict[str, Any]], n_resamples: int) -> dict[str, Any] | None:
    """Test IoU of the 1/4 latency arm minus the matched MAC arm's (FP32, paired BCa over the
    test images of the seeds holding both), or None when no seed has both."""
    quarter = deepest(next(iter(records.values()))["rows"]) if records else None
    both = [r["rows"] for r in records.values() if quarter in r["rows"] and MATCHED in r["rows"]]
    if not both:
        return None
    return paired_bca([rows[quarter]["test_counts"]["fp32"] for rows in both],
                      [rows[MATCHED]["test_counts"]["fp32"] for rows in both], "iou", n_resamples)


def matched_goal(by: dict[tuple[str, str], dict[str, Any]], difference: dict[str, Any] | None) -> dict[str, Any]:
    """Whether pruning through the table beat the MAC target that lands on the same milliseconds."""
    goal = "the latency-targeted model at least as accurate as the MAC-targeted one of the same measured latency"
    arm = deepest(name for name, _ in by)
    quarter, mac = by.get((arm, "fp32")), by.get((MATCHED, "fp32"))
    if difference is None or quarter is None or mac is None:
        return {"goal": goal, "measured": "not measured: no seed has the matched arm (bench.matched)", "met": None}
    return {"goal": goal, "met": difference["mean"] >= 0,
            "measured": f"{arm} {quarter['median_ms']:.1f} ms against {MATCHED} {mac['median_ms']:.1f} ms; "
                        f"test IoU {interval(difference)}"}


def goals(rows: list[dict[str, Any]], matched_iou: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The issue's goals, each with what was measured and whether it was met (None: not
    measured); `matched_iou` is `matched_difference`."""
    by = {(r["arm"], r["format"]): r for r in rows}
    arm = deepest(r["arm"] for r in rows)
    fp32, int8 = by.get((arm, "fp32")), by.get((arm, "int8"))
    out = []
    if fp32:
        loss = fp32["iou_vs_reference"]["mean"]
        quarter = float(arm[len(PREFIX):]) >= 0.75
        where = "" if quarter else f" (1/4 is out of the prune rules' reach; measured at {arm})"
        out.append({"goal": "latency target 1/4 of dense: FP32 speed-up >= 3.2x, <= 1 IoU point lost",
                    "measured": f"{fp32['speedup']:.2f}x, test IoU {loss:+.3f} vs dense{where}",
                    "met": quarter and fp32["speedup"] >= 3.2 and loss >= -0.01})
    if int8:
        loss = int8["iou_vs_reference"]["mean"]
        out.append({"goal": "INT8 adds >= 1.8x with <= 1 further IoU point",
                    "measured": f"{int8['x_fp32']:.2f}x over its FP32, test IoU {loss:+.3f} vs its FP32",
                    "met": int8["x_fp32"] >= 1.8 and loss >= -0.01})
    out.append(matched_goal(by, matched_iou))
    pruned = [r for r in rows if r["format"] == "fp32" and r["arm"] != DENSE]
    fast = [r["arm"] for r in pruned if r["median_ms"] <= 60.0]
    out.append({"goal": "a pruned FP32 model at or under 60 ms per 540x360 image on 2 threads",
                "measured": ", ".join(f"{r['arm']} {r['median_ms']:.1f} ms" for r in pruned), "met": bool(fast)})
    return out


def markdown(result: dict[str, Any]) -> str:
    """The table, the goals and where it ran."""
    lines = ["# Latency benchmark (issue 15)", "",
             f"ONNX Runtime {result['versions'].get('onnxruntime')}, batch 1 at 384x544 (dynamic-axes exports, as "
             f"the export stage ships them), {result['threads']} "
             f"threads, every seed's models interleaved; seeds {result['seeds']} timed on "
             f"{', '.join(sorted(result['machines']))}. Medians over seeds; test IoU in ONNX Runtime, mean ± sd "
             "over seeds, its difference (FP32: vs dense FP32; INT8: vs the same model's FP32) with a paired BCa "
             "95 % interval over the test images. 1-minute load average before and after each seed's timing: "
             + "; ".join(f"seed {seed}: {before:.2f} / {after:.2f}"
                         for seed, (before, after) in result["load_average"].items()) + ".", "",
             "| model | format | median ms | speed-up vs dense | x FP32 | test IoU | Δ IoU [95 %] | tolerance F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        diff = interval(r.get("iou_vs_reference"))
        x_fp32 = f"{r['x_fp32']:.2f}x" if "x_fp32" in r else ""
        lines.append(f"| {r['arm']} | {r['format'].upper()} | {r['median_ms']:.1f} | {r['speedup']:.2f}x | {x_fp32} | "
                     f"{r['iou']['mean']:.3f} ± {r['iou']['std']:.3f} | {diff} | {r['tol_f1']['mean']:.3f} |")
    if result["matched_macs_reduction"]:
        found = ", ".join(f"seed {seed}: {share:.1%}" for seed, share in result["matched_macs_reduction"].items())
        lines += ["", f"{MATCHED}: HQS-L0 at the MAC cut whose pruned model measured the same latency as "
                      f"{deepest(r['arm'] for r in result['rows'])}'s, found by bisection (bench/matched.py): {found}."]
    lines += ["", "## Goals", ""]
    for g in result["goals"]:
        verdict = {True: "met", False: "**not met**", None: "not measured"}[g["met"]]
        lines.append(f"- {g['goal']}: {verdict} ({g['measured']})")
    return "\n".join(lines) + "\n"


def write_summary(records: dict[int, dict[str, Any]], out: Path, config: Path, n_resamples: int) -> dict[str, Any]:
    """Aggregate the current seed records into out/latency.{json,md}."""
    if not records:
        print("no current latency records")
        return {}
    rows = arm_rows(records, n_resamples)
    result = {"config": preset_name(config),
              **environment(), "seeds": sorted(records), "threads": records[min(records)]["threads"],
              "machines": sorted({r["machine"]["cpu"] for r in records.values()}),
              "load_average": {seed: r["load_average"] for seed, r in records.items()},
              "rows": rows, "goals": goals(rows, matched_difference(records, n_resamples)),
              "matched_macs_reduction": {seed: r["arms"][MATCHED]["macs_reduction"] for seed, r in records.items()
                                         if MATCHED in r["arms"]}}
    write_results(out, "latency", result, markdown(result))
    return result
