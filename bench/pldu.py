"""The PLDU benchmark: pruning methods against a dense control on real power-line photos.

Per seed: a dense model trained until early stopping ends it; the control (the dense model
trained as many epochs more as a pruned model gets); every method x MAC target pruned from
the same dense model and fine-tuned with the same budget. Checkpoints, early stopping and
every pick use the threshold-free val score (pipeline.selection), never the test split.
The sparse-training baselines' regulariser strength is tuned on one seed and target (the
tuning runs count in their compute). At the end, BSDS ODS/OIS/AP for dense, the control,
hqs_l0 and the best baseline by val score at each target.

Each run writes a small JSON record under bench/results/pldu/ carrying the hashes of its
code, data, starting model and config (bench/records.py): rerun the command and it skips
what is current, re-runs what changed, and rewrites pldu.{json,md} from current records.

    OMP_NUM_THREADS=1 python -m bench.pldu --workers 2   # all of it (hours on 2 cores): in the background
    python -m bench.pldu --seeds 0 --methods hqs_l0 --macs-reductions 0.75   # a slice
    python -m bench.pldu --summary-only  # re-aggregate the committed records
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

from bench.device_table import table_folder, table_hash
from bench.preset import BenchCfg, load_config, prepared_data
from bench.records import ROOT, RecordStore, code_hash, config_hash, folder_hash, weights_hash
from pipeline.config import PruneCfg
from pipeline.pruning.costs import Target
from pipeline.pruning.latency_target import LatencyPlan
from pipeline.pruning.registry import METHODS, method_names
from pipeline.selection import failed

DENSE_SECTIONS = ("base", "model", "train", "trainer")  # prepare: the data hash covers it (its paths are local)


class Benchmark:
    """Runs (or reuses) the records of one preset; models live under `work`."""

    def __init__(self, bench: BenchCfg, sections: dict[str, Any], data: Path, work: Path, records: Path) -> None:
        self.bench, self.sections, self.data, self.work = bench, sections, data, work
        self.store = RecordStore(records)
        self.data_hash = folder_hash(data)
        self.dumped = {name: section.model_dump() for name, section in sections.items()}

    def inputs(self, module: str, start: str | None, sections: tuple[str, ...], *values: Any) -> dict[str, str]:
        """A record's inputs: its code, the data, the model it starts from, the preset
        `sections` it reads and any further `values` that decide what it does."""
        return {"code": code_hash(module), "data": self.data_hash, "start": start or "",
                "config": config_hash([[self.dumped[n] for n in sections], *values])}

    def _run(self, name: str, inputs: dict[str, str], model: Path, make, need_model: bool) -> dict[str, Any]:
        """The current record `name` (whose model must be on this machine if `need_model`),
        else run `make()` and store its record with the model's hash."""
        record = self.store.current(name, inputs)
        if record is not None and (not need_model or _holds(model, record["model_hash"])):
            return record
        if record is not None:
            print(f"{name}: record current, its model is not on this machine: training it again", flush=True)
        print(f"{time.strftime('%H:%M:%S')} {name}: running", flush=True)
        body = make()
        return self.store.save(name, inputs, {**body, "model_hash": weights_hash(model)})

    # --- what a record is: its name, inputs and model folder -------------------------------

    def dense_spec(self, seed: int) -> tuple[str, dict[str, str], Path]:
        inputs = self.inputs("bench.dense", None, DENSE_SECTIONS, seed)
        return f"seed{seed}/dense", inputs, self.work / f"seed{seed}" / "dense" / "model"

    def control_spec(self, seed: int, dense: dict[str, Any]) -> tuple[str, dict[str, str], Path]:
        inputs = self.inputs("bench.dense", dense["model_hash"], (*DENSE_SECTIONS, "prune", "finetune"), seed)
        return f"seed{seed}/control", inputs, self.work / f"seed{seed}" / "control" / "model"

    def pruned_spec(self, seed: int, dense: dict[str, Any], method: str, target: float | Target,
                    options: dict[str, Any] | None = None) -> tuple[str, dict[str, str], Path]:
        """A pruned arm: a MAC target (a float) or a `Target` (a latency one: the table's
        contents are then among its inputs)."""
        suffix = "".join(f"-{key}{value:g}" for key, value in sorted((options or {}).items()))
        latency = isinstance(target, Target)
        label = f"{target.kind.split('_')[0]}{target.value:g}" if latency else target
        name = f"seed{seed}/{method}-{label}{suffix}"
        key = [target.kind, target.value, self.table_hash()] if latency else target
        inputs = self.inputs("bench.pruned", dense["model_hash"], (*DENSE_SECTIONS, "prune", "finetune"),
                             self.prune_cfg(method, options).model_dump(), method, key, seed, self.bench.within)
        inputs["code"] = code_hash("bench.pruned", METHODS[method].partition(":")[0],
                                   *(["pipeline.pruning.latency_target"] if latency else []))
        return name, inputs, self.work / name / "final"

    @functools.cache  # noqa: B019 - one Benchmark per process, the table does not change under it
    def table_hash(self) -> str:
        return table_hash(self.work)

    def plan(self, target: float | Target) -> LatencyPlan | None:
        """What a latency arm prunes through (None for a MAC arm)."""
        return LatencyPlan(table_folder(self.work)) if isinstance(target, Target) else None

    def prune_cfg(self, method: str, options: dict[str, Any] | None) -> PruneCfg:
        """The preset's prune section with `options`: common prune keys (e.g. round_to) set,
        the others into `method`'s block."""
        cfg: PruneCfg = self.sections["prune"]
        if not options:
            return cfg
        common = {k: v for k, v in options.items() if k in PruneCfg.model_fields}
        own = {k: v for k, v in options.items() if k not in common}
        return PruneCfg.model_validate({**cfg.model_dump(), **common, **({method: own} if own else {})})

    # --- running them ------------------------------------------------------------------------

    def dense(self, seed: int, need_model: bool = False) -> dict[str, Any]:
        from bench.dense import dense_run

        name, inputs, model = self.dense_spec(seed)
        return self._run(name, inputs, model, lambda: dense_run(self.sections, self.data, model.parent, seed),
                         need_model)

    def control(self, seed: int, need_model: bool = False) -> dict[str, Any]:
        """The seed's control (the dense model is trained again only if the control must run)."""
        from bench.dense import control_run

        name, inputs, model = self.control_spec(seed, self.dense(seed))
        if (record := self.store.current(name, inputs)) is not None and not need_model:
            return record
        name, inputs, model = self.control_spec(seed, self.dense(seed, need_model=True))
        dense_model = self.dense_spec(seed)[2]
        return self._run(name, inputs, model,
                         lambda: control_run(self.sections, self.data, dense_model, model.parent, seed), need_model)

    def pruned(self, seed: int, method: str, target: float | Target, options: dict[str, Any] | None = None,
               need_model: bool = False) -> dict[str, Any]:
        """One pruned run (the dense model is trained again only if the run must)."""
        from bench.pruned import pruned_run

        name, inputs, model = self.pruned_spec(seed, self.dense(seed), method, target, options)
        if (record := self.store.current(name, inputs)) is not None and not need_model:
            return record
        dense = self.dense(seed, need_model=True)
        name, inputs, model = self.pruned_spec(seed, dense, method, target, options)
        return self._run(name, inputs, model,
                         lambda: pruned_run(self.sections, self.data, self.dense_spec(seed)[2], model.parent, seed,
                                            method, target, self.prune_cfg(method, options), dense["val_score"],
                                            self.bench.within, self.plan(target)), need_model)

    def tuned_options(self, method: str, dense_of: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
        """The method's option value picked by val score on the tuning seed and target, from
        current records (bench.schedule runs the tuning runs); None for untuned methods, or
        when records are missing."""
        grid = self.bench.tune.get(method)
        seed, target = self.bench.tune_seed, self.bench.tune_target
        if not grid or seed not in dense_of:
            return None
        (key, values), = grid.items()  # one option per method: a grid search is not what this measures
        tried = {}
        for value in values:
            name, inputs, _ = self.pruned_spec(seed, dense_of[seed], method, target, {key: value})
            tried[value] = self.store.current(name, inputs)
        if not all(tried.values()):
            return None
        best = max(values, key=lambda v: (not failed(tried[v]["val_score"], dense_of[seed]["val_score"]),
                                          tried[v]["val_score"]))
        return {key: best}

    def bsds(self, seed: int, arm: str, rerun) -> dict[str, Any] | None:
        """BSDS counts of the final model of the record `seed<N>/<arm>`; `rerun(need_model=True)`
        gives that record with its model on this machine (None: only read what is current)."""
        from bench.bsds import split_boundary_counts
        from pipeline.artifact import load_model

        run = self.store.load(f"seed{seed}/{arm}")
        if run is None:
            return None
        name = f"seed{seed}/bsds-{arm}"
        inputs = {"code": code_hash("bench.bsds"), "data": self.data_hash, "start": run["model_hash"], "config": ""}
        if (record := self.store.current(name, inputs)) is not None or rerun is None:
            return record
        run = rerun(need_model=True)
        inputs["start"] = run["model_hash"]
        print(f"{time.strftime('%H:%M:%S')} {name}: matching boundaries", flush=True)
        model = self.work / f"seed{seed}" / arm / ("model" if arm in ("dense", "control") else "final")
        return self.store.save(name, inputs, {"counts": split_boundary_counts(load_model(model)[0], self.data)})


def _holds(model: Path, expected: str) -> bool:
    """Whether the model folder holds the weights with this hash."""
    return (model / "model.pt").exists() and weights_hash(model) == expected


def preset_arguments(p: argparse.ArgumentParser) -> None:
    """--config, --work, --out and --seeds: where a script finds the PLDU benchmark's preset,
    models and records (bench.pldu, bench.round_to, bench.latency)."""
    p.add_argument("--config", type=Path, default=ROOT / "bench" / "pldu.yaml", help="benchmark preset")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work", help="models (not committed)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    p.add_argument("--seeds", type=int, nargs="+", help="override bench.seeds")


def open_records(args: argparse.Namespace) -> Benchmark:
    """The PLDU benchmark of `preset_arguments`' values, to read its records and models."""
    bench, sections = load_config(args.config)
    if args.seeds:
        bench = bench.model_copy(update={"seeds": args.seeds})
    return Benchmark(bench, sections, args.work / "data", args.work, args.out / "pldu")


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the benchmark, then write bench/results/pldu.{json,md} and the figure."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    preset_arguments(p)
    p.add_argument("--methods", nargs="+", choices=method_names(), help="override bench.methods")
    p.add_argument("--macs-reductions", type=float, nargs="+", help="override bench.macs_reductions")
    p.add_argument("--dense-only", action="store_true", help="only the dense models and the controls")
    p.add_argument("--no-control", action="store_true", help="skip the controls (e.g. a study of one method)")
    p.add_argument("--no-bsds", action="store_true", help="skip the BSDS scorings")
    p.add_argument("--summary-only", action="store_true", help="only re-aggregate the current records")
    p.add_argument("--workers", type=int, default=1,
                   help="processes for a seed's runs once its dense model exists (OMP_NUM_THREADS=1: one per core)")
    args = p.parse_args(argv)
    bench, sections = load_config(args.config)
    bench = bench.model_copy(update={k: v for k, v in {"seeds": args.seeds, "methods": args.methods,
                                                          "macs_reductions": args.macs_reductions}.items() if v})
    if args.no_bsds:
        bench = bench.model_copy(update={"bsds": False})
    data = prepared_data(sections["prepare"], sections["base"], args.work / "data")
    b = Benchmark(bench, sections, data, args.work, args.out / "pldu")
    if not args.summary_only:
        from bench.schedule import run_all

        run_all(b, args.dense_only, args.workers, control=not args.no_control)
    from bench.summary import write_summary

    write_summary(b, args.out, args.config)


if __name__ == "__main__":
    main()
