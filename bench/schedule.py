"""The order the PLDU benchmark's runs go in, on one process or several.

One seed after another, whole (dense, then its control and every method x target, the
latency arms and HQS-L0's MAC target matched to one of them (bench.matched), then BSDS),
so a session that ends between seeds leaves nothing that needs this machine's models: a
seed's records must all come from one machine (its dense model is not bit-reproducible on
another CPU). With `workers` > 1, once the seed's dense model exists, the tuning runs,
then the control and the pruned runs, then the BSDS scorings go to that many processes
(spawned: each imports its own torch). Run with OMP_NUM_THREADS=1 so that N workers use N
cores and every run trains with the thread count its records state.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from bench import matched
from bench.device_table import ensure_table
from pipeline.pruning.costs import Target
from pipeline.selection import failed

if TYPE_CHECKING:
    from bench.pldu import Benchmark

Job = tuple[str, int, tuple]  # (kind: control | pruned | bsds, seed, what)
_worker: Benchmark | None = None  # a worker process's own Benchmark


def run_all(b: Benchmark, dense_only: bool = False, workers: int = 1, control: bool = True) -> None:
    """Every record of the preset, seed by seed (see the module docstring), BSDS included
    (unless `bench.bsds` is off); the controls unless `control` is False."""
    dense_of: dict[int, dict[str, Any]] = {}
    if b.bench.latency_targets and not dense_only:  # timed first: nothing else may run meanwhile
        ensure_table(b.work, b.sections["model"], b.bench.latency_step)
    for seed in b.bench.seeds:
        dense_of[seed] = b.dense(seed)
        if dense_only:
            run_jobs(b, [("control", seed, ())], workers)
            continue
        tuning = any(method in b.bench.tune for method in b.bench.methods)
        if (tuning or b.bench.bsds) and b.bench.tune_seed not in dense_of:  # its runs choose for every seed
            dense_of[b.bench.tune_seed] = b.dense(b.bench.tune_seed)
        run_jobs(b, tuning_jobs(b), workers)
        tuned = {method: b.tuned_options(method, dense_of) for method in b.bench.methods}
        arms = [("pruned", seed, (method, target, options))
                for target in sorted(b.bench.macs_reductions, reverse=True) for method in b.bench.methods
                for options in arm_options(b, method, tuned[method])]
        arms += [("pruned", seed, (method, Target("latency_reduction", share), tuned[method]))
                 for share in b.bench.latency_targets for method in b.bench.latency_methods]
        run_jobs(b, [*([("control", seed, ())] if control else []), *arms], workers)
        if matched.METHOD in b.bench.latency_methods:  # alone: its probes are timed
            reduction = matched.matched_reduction(b, seed, tuned[matched.METHOD])
            run_jobs(b, [("pruned", seed, (matched.METHOD, reduction, tuned[matched.METHOD]))], workers)
        if b.bench.bsds:
            run_jobs(b, [("bsds", seed, (arm, tuned)) for arm, _ in bsds_arms(b, seed, tuned)], workers)


def arm_options(b: Benchmark, method: str, tuned: dict[str, Any] | None) -> list[dict[str, Any] | None]:
    """The options of `method`'s arms: its tuned ones, then each of its variants on top."""
    return [tuned, *({**(tuned or {}), **variant} for variant in b.bench.variants.get(method, []))]


def tuning_jobs(b: Benchmark) -> list[Job]:
    """The tuning seed's runs at the tuning target, one per value of each tuned option (of
    the methods this run covers)."""
    return [("pruned", b.bench.tune_seed, (method, b.bench.tune_target, {key: value}))
            for method, grid in b.bench.tune.items() if method in b.bench.methods
            for key, values in grid.items() for value in values]


def run_jobs(b: Benchmark, jobs: list[Job], workers: int) -> None:
    """Run the `jobs` whose records are not current, here (workers 1) or in `workers` spawned
    processes; a failure stops the rest. The dense models they start from are put on this
    machine first, here, so that no two workers train the same one."""
    jobs = [job for job in jobs if pending(b, job)]
    for seed in sorted({seed for _, seed, _ in jobs}):
        b.dense(seed, need_model=True)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            run_job(b, job)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_start,
                             initargs=(b.bench, b.sections, b.data, b.work, b.store.folder)) as pool:
        for _ in pool.map(_run_in_worker, jobs):
            pass


def pending(b: Benchmark, job: Job) -> bool:
    """Whether the job's record is missing or stale (a BSDS job: and its run's record exists)."""
    kind, seed, what = job
    if kind == "bsds":
        return b.store.load(f"seed{seed}/{what[0]}") is not None and b.bsds(seed, what[0], None) is None
    dense = b.dense(seed)
    name, inputs, _ = b.control_spec(seed, dense) if kind == "control" else b.pruned_spec(seed, dense, *what)
    return b.store.current(name, inputs) is None


def _start(*args: Any) -> None:
    global _worker
    from bench.pldu import Benchmark

    _worker = Benchmark(*args)


def _run_in_worker(job: Job) -> None:
    run_job(_worker, job)


def run_job(b: Benchmark, job: Job) -> None:
    """One record (reused when current): the seed's control, a pruned run or a BSDS scoring."""
    kind, seed, what = job
    if kind == "control":
        b.control(seed)
    elif kind == "pruned":
        method, target, options = what
        b.pruned(seed, method, target, options)
    else:
        arm, tuned = what
        b.bsds(seed, arm, dict(bsds_arms(b, seed, tuned))[arm])


def bsds_arms(b: Benchmark, seed: int, tuned: dict[str, dict[str, Any] | None]) -> list[tuple[str, Any]]:
    """(arm, its rerun) of the runs of `seed` that BSDS scores: dense, the control, hqs_l0 and,
    at each target, the baseline (not an HQS-L0 variant) with the best val score on the
    tuning seed, failed runs excluded: chosen on val, once, before the other seeds run."""
    arms = [("dense", lambda need_model: b.dense(seed, need_model)),
            ("control", lambda need_model: b.control(seed, need_model))]
    tune_seed = b.bench.tune_seed
    tune_dense = b.dense(tune_seed)
    for target in b.bench.macs_reductions:
        scores = {}
        for method in b.bench.methods:
            name, inputs, _ = b.pruned_spec(tune_seed, tune_dense, method, target, tuned.get(method))
            run = b.store.current(name, inputs)
            if run and not method.startswith("hqs_l0") and not failed(run["val_score"], tune_dense["val_score"]):
                scores[method] = run["val_score"]
        for method in ["hqs_l0", *([max(scores, key=scores.get)] if scores else [])]:
            suffix = b.pruned_spec(seed, tune_dense, method, target, tuned.get(method))[0].split("/", 1)[1]
            arms.append((suffix, lambda need_model, m=method, t=target: b.pruned(seed, m, t, tuned.get(m), need_model)))
    return arms
