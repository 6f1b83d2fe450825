"""Benchmark on real data: HQS-L0 vs Torch-Pruning magnitude vs BN slimming vs random on PLDU.

Per seed: one dense model trained to convergence (early stopping on val IoU) before any
pruning, then every method x MAC target pruned from it and fine-tuned with equal budgets.
Records the test IoU right after removal and after fine-tuning, and the fine-tuning steps
until val IoU comes within `bench.within` of the dense model's. Each finished run is a JSON
file under --work, so a killed benchmark resumes where it stopped.

    python -m bench.pldu                 # ~2 h on 2 cores; run it in the background
    python -m bench.pldu --seeds 0 --methods hqs_l0 --macs-reductions 0.5   # a slice
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from bench.stats import summarise, write_outputs
from pipeline.artifact import save_model, write_json
from pipeline.config import FinetuneCfg, ModelCfg, PruneCfg, Strict, TrainCfg, TrainerCfg
from pipeline.data.prepare import prepare
from pipeline.measure import macs_and_params
from pipeline.params import SECTIONS, load_params, parse_section
from pipeline.pruning.registry import method_names
from pipeline.pruning.run import finetune, prune
from pipeline.report.collect import dvclive_curve
from pipeline.scoring import split_counts
from pipeline.train import describe, fit

ROOT = Path(__file__).resolve().parent.parent
USED = ("base", "prepare", "model", "train", "trainer", "prune", "finetune")  # the pipeline sections read


class BenchCfg(Strict):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["hqs_l0", "magnitude", "slimming", "random"])
    macs_reductions: list[float] = Field(default_factory=lambda: [0.5, 0.75])
    within: float = Field(0.01, gt=0)
    bootstrap: int = Field(2000, ge=100)


def load_config(path: Path) -> tuple[BenchCfg, dict[str, Any]]:
    """The `bench` section and the validated pipeline sections of the preset."""
    params = load_params(path)
    bench = parse_section(params, "bench", BenchCfg, str(path))
    sections = {name: parse_section(params, name, SECTIONS[name], str(path)) for name in USED}
    return bench, sections


def dense_run(sections: dict[str, Any], data: Path, folder: Path, seed: int) -> dict[str, Any]:
    """Train (or reuse) the seed's dense model; its record holds val/test figures and per-image counts."""
    record_path = folder / "record.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    model_cfg: ModelCfg = sections["model"]
    train: TrainCfg = sections["train"]
    started = time.time()
    result = fit(model_cfg, train, sections["trainer"], data, folder / "logs", seed, sections["base"].num_classes)
    size = train.crop_size
    save_model(result.module.model, folder / "model", describe(model_cfg, sections["base"].num_classes, result,
                                                               train=train, cost_size=size))
    macs, params = macs_and_params(result.module.model, size)
    epochs = len(dvclive_curve(folder / "logs", "val/iou"))
    record = {"seed": seed, "metrics": result.metrics, "threshold": result.threshold, "epochs": epochs,
              "gmacs": macs / 1e9, "mparams": params / 1e6, "seconds": time.time() - started,
              "test_counts": split_counts(result.module.model, data, result.threshold)}
    write_json(record, record_path)
    return record


def steps_to_recover(after_removal: float, curve: list[tuple[int, float]], target: float) -> int | None:
    """Fine-tuning steps until val IoU >= target: 0 if already there after removal, None if never."""
    if after_removal >= target:
        return 0
    return next((step + 1 for step, iou in curve if iou >= target), None)


def pruned_run(sections: dict[str, Any], bench: BenchCfg, data: Path, work: Path, dense: dict[str, Any],
               method: str, target: float) -> dict[str, Any]:
    """Prune the seed's dense model by one method to one MAC target, fine-tune, score (or reuse)."""
    seed = dense["seed"]
    folder = work / f"seed{seed}" / f"{method}-{target}"
    record_path = folder / "record.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    started = time.time()
    dense_folder = work / f"seed{seed}" / "dense" / "model"
    prune_cfg: PruneCfg = sections["prune"]
    trainer: TrainerCfg = sections["trainer"]
    pruned, card, record = prune(dense_folder, data, method, target, prune_cfg, trainer, seed, folder / "prune-logs")
    after_counts = split_counts(pruned, data, card.threshold)
    save_model(pruned, folder / "pruned", card)
    finetune_cfg: FinetuneCfg = sections["finetune"]
    model, final_card, final = finetune(folder / "pruned", dense_folder, data, finetune_cfg, trainer, seed,
                                        folder / "finetune-logs")
    curve = dvclive_curve(folder / "finetune-logs", "val/iou")
    goal = dense["metrics"]["val/iou"] - bench.within
    result = {
        "seed": seed, "method": method, "macs_reduction": target, "achieved_reduction": record["achieved_reduction"],
        "gmacs": record["pruned"]["gmacs"], "mparams": record["pruned"]["mparams"],
        "after_removal": record["after_removal"], "final": final["final"], "finetune_epochs": final["epochs"],
        "steps_per_epoch": (curve[0][0] + 1) if curve else None, "val_curve": curve,
        "steps_to_recover": steps_to_recover(record["after_removal"]["val/iou"], curve, goal),
        "saliency_gap": record.get("templates", {}).get("saliency_gap"),
        "after_counts": after_counts, "final_counts": split_counts(model, data, final_card.threshold),
        "seconds": time.time() - started,
    }
    write_json(result, record_path)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the benchmark, then write bench/results/pldu.json and the Pareto PNG."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "bench" / "pldu.yaml", help="benchmark preset")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work", help="models and per-run records")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    p.add_argument("--seeds", type=int, nargs="+", help="override bench.seeds")
    p.add_argument("--methods", nargs="+", choices=method_names(), help="override bench.methods")
    p.add_argument("--macs-reductions", type=float, nargs="+", help="override bench.macs_reductions")
    args = p.parse_args(argv)
    bench, sections = load_config(args.config)
    bench = bench.model_copy(update={k: v for k, v in {"seeds": args.seeds, "methods": args.methods,
                                                          "macs_reductions": args.macs_reductions}.items() if v})
    source = (ROOT / sections["prepare"].root).resolve()
    if not source.exists():
        sys.exit(f"skipped: the PLDU data is not at {source} (put PLD-UAV's PLDU folder there)")
    prepare_cfg = sections["prepare"].model_copy(update={"root": str(source),
                                                         "split_file": str(ROOT / sections["prepare"].split_file)})
    data = args.work / "data"
    if not (data / "manifest.json").exists():
        prepare(prepare_cfg, sections["base"], data)
    dense, runs = {}, []
    for seed in bench.seeds:
        dense[seed] = dense_run(sections, data, args.work / f"seed{seed}" / "dense", seed)
        dense[seed]["val_curve"] = dvclive_curve(args.work / f"seed{seed}" / "dense" / "logs", "val/iou")
        print(f"seed {seed}: dense test IoU {dense[seed]['metrics']['test/iou']:.3f} "
              f"({dense[seed]['epochs']} epochs)", flush=True)
        for target in bench.macs_reductions:
            for method in bench.methods:
                run = pruned_run(sections, bench, data, args.work, dense[seed], method, target)
                runs.append(run)
                print(f"seed {seed} {method}-{target}: IoU after removal {run['after_removal']['test/iou']:.3f}, "
                      f"final {run['final']['test/iou']:.3f}, recovered after {run['steps_to_recover']} steps",
                      flush=True)
    summary = summarise(dense, runs, bench.bootstrap, reference="hqs_l0")
    write_outputs(summary, args.out / "pldu.json", args.out / "pldu_pareto.png",
                  {"config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT)
                   else str(args.config), "bench": bench.model_dump()})


if __name__ == "__main__":
    main()
