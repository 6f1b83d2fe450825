"""pldu.{json,md}: the benchmark's records, current ones only, aggregated into one row per
arm (dense, control, method x target) with BCa intervals against the control and hqs_l0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.records import environment
from bench.stats import mean_std, paired_bca
from pipeline.scoring import scores
from pipeline.selection import failed

REFERENCES = ("control", "hqs_l0")  # every row's test IoU and tolerance F1 minus these, per target


def collect(b: Any) -> dict[str, Any]:
    """The current records of the preset `b` (bench.pldu.Benchmark), and what is missing."""
    dense_of, missing, runs = {}, [], []
    for seed in b.bench.seeds:
        name, inputs, _ = b.dense_spec(seed)
        if (record := b.store.current(name, inputs)) is None:
            missing.append(name)
            continue
        dense_of[seed] = record
    tuned = {m: b.tuned_options(m, dense_of) for m in b.bench.methods}
    tuning = [r for m in b.bench.tune for r in _tuning_runs(b, m, dense_of)]
    for seed, dense in dense_of.items():
        specs = [b.control_spec(seed, dense)]
        specs += [b.pruned_spec(seed, dense, m, t, tuned[m]) for t in b.bench.macs_reductions for m in b.bench.methods
                  if not (b.bench.tune.get(m) and tuned[m] is None)]
        for name, inputs, _ in specs:
            record = b.store.current(name, inputs)
            (runs.append(record) if record else missing.append(name))
    bsds = {}
    for run in [*dense_of.values(), *runs]:
        short = run["name"].split("/", 1)[1]
        if (record := b.bsds(run["seed"], short, None)) is not None:
            bsds[run["name"]] = record["counts"]
    return {"dense": dense_of, "runs": runs, "tuned": tuned, "tuning": tuning, "missing": missing, "bsds": bsds}


def _tuning_runs(b: Any, method: str, dense_of: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    (key, values), = b.bench.tune[method].items()
    seed = b.bench.tune_seed
    if seed not in dense_of:
        return []
    specs = [b.pruned_spec(seed, dense_of[seed], method, b.bench.tune_target, {key: v}) for v in values]
    return [r for name, inputs, _ in specs if (r := b.store.current(name, inputs))]


def arm_key(run: dict[str, Any]) -> tuple[str, float | None]:
    return (run.get("method") or run["arm"], run.get("macs_reduction"))


def summarise(found: dict[str, Any], n_resamples: int) -> dict[str, Any]:
    """One row per arm over its seeds; differences with BCa intervals over test images."""
    dense_of = found["dense"]
    arms: dict[tuple, list[dict[str, Any]]] = {("dense", None): list(dense_of.values())} if dense_of else {}
    for run in found["runs"]:
        arms.setdefault(arm_key(run), []).append(run)
    tuning_tmacs = {}
    for run in found["tuning"]:
        tuning_tmacs[run["method"]] = tuning_tmacs.get(run["method"], 0.0) + run["train_tmacs"]
    rows = [_row(key, runs, dense_of, found["bsds"], tuning_tmacs) for key, runs in arms.items()]
    by_key = {(r["arm"], r["macs_reduction"]): runs for r, runs in zip(rows, arms.values(), strict=True)}
    for row in rows:
        for ref in REFERENCES:
            refs = by_key.get((ref, None if ref == "control" else row["macs_reduction"]))
            if refs is None or row["arm"] in (ref, "dense") or (ref == "hqs_l0" and row["arm"] == "control"):
                continue
            mine = {r["seed"]: r for r in by_key[(row["arm"], row["macs_reduction"])]}
            seeds = sorted(set(mine) & {r["seed"] for r in refs})
            theirs = {r["seed"]: r for r in refs}
            if seeds:
                row[f"vs_{ref}"] = {metric: _difference([mine[s] for s in seeds], [theirs[s] for s in seeds],
                                                        metric, n_resamples) for metric in ("iou", "tol_f1")}
    return {"rows": rows, "tuned": found["tuned"], "missing": found["missing"],
            "tuning": [{"name": r["name"], "options": r["options"], "val_score": r["val_score"]}
                       for r in found["tuning"]]}


def _difference(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], metric: str, n_resamples: int
                ) -> dict[str, Any]:
    """BCa interval of the pooled difference, with the standard deviation of the per-seed differences."""
    per_seed = [float(scores(a["test_counts"])[metric] - scores(b["test_counts"])[metric])
                for a, b in zip(mine, theirs, strict=True)]
    return {**paired_bca([r["test_counts"] for r in mine], [r["test_counts"] for r in theirs], metric, n_resamples),
            "seed_std": mean_std(per_seed)["std"], "per_seed": [round(d, 4) for d in per_seed]}


def _row(key: tuple, runs: list[dict[str, Any]], dense_of: dict[int, dict[str, Any]], bsds: dict[str, Any],
         tuning_tmacs: dict[str, float]) -> dict[str, Any]:
    arm, target = key
    final = [scores(r["test_counts"]) for r in runs]
    row = {"arm": arm, "macs_reduction": target, "seeds": [r["seed"] for r in runs],
           "gmacs": mean_std([r["gmacs"] for r in runs]),
           "iou": mean_std([float(f["iou"]) for f in final]), "tol_f1": mean_std([float(f["tol_f1"]) for f in final]),
           "val_score": mean_std([r["val_score"] for r in runs]),
           "failed": [r["seed"] for r in runs if failed(r["val_score"], dense_of[r["seed"]]["val_score"])],
           "epochs": [r["epochs"] for r in runs], "train_tmacs": mean_std([r["train_tmacs"] for r in runs]),
           "tuning_tmacs": tuning_tmacs.get(arm, 0.0), "minutes": mean_std([r["seconds"] / 60 for r in runs])}
    if arm == "dense":
        row["cap_reached"] = [r["seed"] for r in runs if r.get("cap_reached")]
    if target is not None:
        after = [scores(r["after_counts"]) for r in runs]
        row.update({"achieved_reduction": mean_std([r["achieved_reduction"] for r in runs]),
                    "iou_after_removal": mean_std([float(a["iou"]) for a in after]),
                    "steps_to_recover": [r["steps_to_recover"] for r in runs],
                    "saliency_gap": [r.get("saliency_gap") for r in runs], "options": runs[0].get("options"),
                    # the share of tied decision scores and the seconds the decision took (calibration
                    # passes included), per seed; None in records made before they were kept
                    "tied_share": [r.get("tied_share") for r in runs],
                    "decision_seconds": [r.get("decision_seconds") for r in runs]})
        raw = [r["after_removal_raw"]["test/iou"] for r in runs if r.get("after_removal_raw")]
        if raw:
            row["iou_after_removal_raw"] = mean_std(raw)
        if all(r.get("masking") for r in runs):
            row["masking"] = {k: mean_std([r["masking"][k] for r in runs]) for k in runs[0]["masking"]}
    boundary = [bsds[r["name"]] for r in runs if r["name"] in bsds]
    if boundary and len(boundary) == len(runs):
        from bench.bsds import ods_ois_ap

        per_seed = [ods_ois_ap(counts) for counts in boundary]
        row["bsds"] = {k: mean_std([s[k] for s in per_seed]) for k in ("ods", "ois", "ap")}
    return row


def write_summary(b: Any, out: Path, config: Path) -> dict[str, Any]:
    """Aggregate the current records into out/pldu.{json,md} and the Pareto figure."""
    from bench.figures import pareto_plot
    from bench.tables import markdown, preset_name, write_results

    summary = summarise(collect(b), b.bench.bootstrap)
    about = {"config": preset_name(config),
             "bench": b.bench.model_dump(), **environment(), "test_images": _test_images(b)}
    write_results(out, "pldu", {**about, **summary}, markdown({**about, **summary}))
    pareto_plot(summary, out / "pldu_pareto.png")
    return summary


def _test_images(b: Any) -> int:
    return int(json.loads((b.data / "manifest.json").read_text())["splits"]["test"]["images"])
