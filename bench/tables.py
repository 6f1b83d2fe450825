"""pldu.md: the benchmark summary as Markdown tables a reviewer can read; and the one way every
benchmark writes its results pair (name.json beside name.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.records import ROOT


def preset_name(config: Path) -> str:
    """The preset as the results file names it: relative to the project when inside it."""
    return str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config)


def write_results(out: Path, name: str, result: dict[str, Any], text: str) -> None:
    """out/name.json (the figures) and out/name.md (text, also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    (out / f"{name}.md").write_text(text)
    print(text)


def plus_minus(stat: dict[str, float] | None, digits: int = 3) -> str:
    """mean ± std, or "-"."""
    return "-" if not stat else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def interval(stat: dict[str, Any] | None) -> str:
    """A difference with its 95 % interval (and the spread over seeds when known), or "-"."""
    if not stat:
        return "-"
    low, high = stat["ci95"]
    spread = f" (seeds ± {stat['seed_std']:.3f})" if "seed_std" in stat else ""
    return f"{stat['mean']:+.3f} [{low:+.3f}, {high:+.3f}]{spread}"


def _name(row: dict[str, Any]) -> str:
    name = row["arm"] if row["macs_reduction"] is None else f"{row['arm']} -{row['macs_reduction']:.0%}"
    return f"{name} **(failed: seed {', '.join(map(str, row['failed']))})**" if row["failed"] else name


def results_table(rows: list[dict[str, Any]]) -> list[str]:
    """Accuracy and cost per arm (mean ± std over seeds)."""
    lines = ["| arm | seeds | MACs cut | GMACs | IoU after removal (no BN recal.) | final IoU | tol. F1 | val score | "
             "ODS / OIS / AP | train TMACs (+tuning) | minutes | epochs |", "|---" * 12 + "|"]
    for r in rows:
        raw = f" ({plus_minus(r['iou_after_removal_raw'])})" if "iou_after_removal_raw" in r else ""
        bsds = " / ".join(f"{r['bsds'][k]['mean']:.3f}" for k in ("ods", "ois", "ap")) if "bsds" in r else "-"
        cut = f"{r['achieved_reduction']['mean']:.1%}" if "achieved_reduction" in r else "-"
        tuning = f" (+{r['tuning_tmacs']:.0f})" if r["tuning_tmacs"] else ""
        lines.append(f"| {_name(r)} | {len(r['seeds'])} | {cut} | {r['gmacs']['mean']:.3f} | "
                     f"{plus_minus(r.get('iou_after_removal'))}{raw} | {plus_minus(r['iou'])} | "
                     f"{plus_minus(r['tol_f1'])} | "
                     f"{plus_minus(r['val_score'])} | {bsds} | {r['train_tmacs']['mean']:.0f}{tuning} | "
                     f"{r['minutes']['mean']:.1f} | {', '.join(map(str, r['epochs']))} |")
    return lines


def comparison_table(rows: list[dict[str, Any]]) -> list[str]:
    """Each arm minus the control and minus hqs_l0: test IoU and tolerance F1, BCa 95 %."""
    lines = ["| arm | IoU − control | tol. F1 − control | IoU − hqs_l0 | tol. F1 − hqs_l0 | steps to recover | "
             "saliency gap | tied scores | decision s |", "|---" * 9 + "|"]
    for r in rows:
        if r["macs_reduction"] is None and r["arm"] != "control":
            continue
        c, h = r.get("vs_control", {}), r.get("vs_hqs_l0", {})
        steps = ", ".join("never" if s is None else str(s) for s in r.get("steps_to_recover", [])) or "-"
        gaps = [g for g in r.get("saliency_gap", []) if g is not None]
        gap = ", ".join(f"{g:.2f}" for g in gaps) or "-"
        tied = ", ".join(f"{t:.0%}" for t in r.get("tied_share", []) if t is not None) or "-"
        seconds = ", ".join(f"{t:.0f}" for t in r.get("decision_seconds", []) if t is not None) or "-"
        lines.append(f"| {_name(r)} | {interval(c.get('iou'))} | {interval(c.get('tol_f1'))} | "
                     f"{interval(h.get('iou'))} | "
                     f"{interval(h.get('tol_f1'))} | {steps} | {gap} | {tied} | {seconds} |")
    return lines


def ranking_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per MAC target, the methods run on every seed ranked by mean val score (the selection rule:
    test is shown beside the rank, never used for it). Failed arms go last, marked."""
    lines = []
    seeds = max((len(r["seeds"]) for r in rows), default=0)
    for target in sorted({r["macs_reduction"] for r in rows if r["macs_reduction"] is not None}):
        ranked = sorted((r for r in rows if r["macs_reduction"] == target and len(r["seeds"]) == seeds),
                        key=lambda r: (bool(r["failed"]), -r["val_score"]["mean"]))
        lines += [f"Ranked on val at -{target:.0%} MACs ({seeds} seeds; the test columns are not used to rank):", "",
                  "| rank | arm | val score | final test IoU | IoU − hqs_l0 (test) |", "|---" * 5 + "|"]
        lines += [f"| {i} | {_name(r)} | {plus_minus(r['val_score'])} | {plus_minus(r['iou'])} | "
                  f"{interval(r.get('vs_hqs_l0', {}).get('iou'))} |" for i, r in enumerate(ranked, 1)]
        fewer = [f"{_name(r)} ({len(r['seeds'])})" for r in rows
                 if r["macs_reduction"] == target and len(r["seeds"]) < seeds]
        lines += ["", f"Not ranked, fewer seeds: {', '.join(fewer)}."] if fewer else []
        lines.append("")
    return lines


def markdown(summary: dict[str, Any]) -> str:
    """The whole pldu.md."""
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v)
    lines = ["# PLDU benchmark", "",
             f"Commit {summary['commit'][:10]}{' (with uncommitted changes)' if summary['dirty'] else ''}; "
             f"{versions}. Config `{summary['config']}`; {summary['test_images']} test images. "
             "Mean ± std over seeds; intervals: paired BCa 95 % over test images, each image's counts summed "
             "over the seeds. Training compute: forward MACs at the crop size x samples seen x 3. A run fails "
             "when its val score is below half its seed's dense one.", "", *results_table(summary["rows"]), "",
             *comparison_table(summary["rows"]), "", *ranking_table(summary["rows"])]
    if summary["tuning"]:
        lines += ["Tuning runs (seed and target of `bench.tune_seed`, `bench.tune_target`), picked by val score:",
                  *[f"- {t['name']}: val score {t['val_score']:.3f}" for t in summary["tuning"]], ""]
    if summary["missing"]:
        lines += [f"Not yet run (or stale, to re-run): {', '.join(summary['missing'])}", ""]
    return "\n".join(lines)
