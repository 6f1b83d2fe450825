"""Issue 15's matched arm: HQS-L0 at the MAC target that gives the same measured latency as
its latency-targeted arm at the preset's largest latency target (1/4 of dense).

The question it answers: does pruning through the device table buy accuracy, or would the
MAC target that lands on the same milliseconds do as well? The MAC target is found by
bisection on measured latency. Each probe prunes the seed's dense model with HQS-L0 at a
MAC target (the sparsifying phase only: fine-tuning changes no shape) and times its static
ONNX export against the latency arm's model, interleaved, as a paired ratio. The probe
closest to the same latency wins; its MAC target then runs as an ordinary pruned arm (the
same fine-tuning budget as every arm). The probes' trace is a record of its own, keyed by
the dense model, the latency arm's model, this code and the search settings. `b` is the
PLDU benchmark (bench.pldu.Benchmark), not imported: its bookkeeping is not in this code's hash.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.device_table import SIZE
from bench.records import code_hash
from pipeline.pruning.costs import Target

METHOD = "hqs_l0"
ARM = f"{METHOD}-matched"  # its name in bench.latency (the MAC target differs per seed)
BRACKET = (0.5, 0.9)  # MAC reductions searched
TOLERANCE = 0.03  # |paired latency ratio - 1| that counts as the same latency
PROBES = 6
ROUNDS = 15


def bisect_reduction(ratio_at: Callable[[float], float], start: float, low: float = BRACKET[0],
                     high: float = BRACKET[1], tolerance: float = TOLERANCE, probes: int = PROBES
                     ) -> tuple[float, list[dict[str, float]]]:
    """The MAC reduction whose model's latency / the reference's (`ratio_at`, falling as the
    reduction grows) is nearest 1: first probed at `start`, then by bisection of [low, high]
    until a probe lands within `tolerance` or `probes` are spent. Returns (the best probed
    reduction, every probe as {reduction, ratio})."""
    trace: list[dict[str, float]] = []
    probe = min(max(start, low), high)
    for _ in range(probes):
        ratio = ratio_at(probe)
        trace.append({"reduction": probe, "ratio": ratio})
        if abs(ratio - 1) <= tolerance:
            break
        low, high = (probe, high) if ratio > 1 else (low, probe)  # slower than the reference: cut more
        probe = round((low + high) / 2, 4)
    best = min(trace, key=lambda p: abs(p["ratio"] - 1))
    return best["reduction"], trace


def reference_target(b: Any) -> Target:
    """The latency arm the MAC target is matched to: HQS-L0 at the largest latency target."""
    return Target("latency_reduction", max(b.bench.latency_targets))


def matched_spec(b: Any, seed: int, options: dict[str, Any] | None) -> tuple[str, dict[str, str]]:
    """The probes' record: its name and inputs (the dense model and the latency arm's model,
    whose record must be current)."""
    dense = b.dense(seed)
    arm, arm_inputs, _ = b.pruned_spec(seed, dense, METHOD, reference_target(b), options)
    if (reference := b.store.current(arm, arm_inputs)) is None:
        raise SystemExit(f"{arm}: no current record; the matched arm is found after it")
    inputs = b.inputs("bench.matched", dense["model_hash"], ("prune",), options,
                      [BRACKET, TOLERANCE, PROBES, ROUNDS, SIZE], reference["model_hash"])
    inputs["code"] = code_hash("bench.matched", "bench.pruned")
    return f"seed{seed}/matched-{METHOD}", inputs


def matched_reduction(b: Any, seed: int, options: dict[str, Any] | None = None, threads: int = 2,
                      search: bool = True) -> float | None:
    """The seed's matched MAC target: from its current record, else (with `search`) found
    now; the dense model and the latency arm's model must then be on this machine."""
    name, inputs = matched_spec(b, seed, options)
    if (record := b.store.current(name, inputs)) is not None or not search:
        return None if record is None else record["reduction"]
    target = reference_target(b)
    b.dense(seed, need_model=True)
    reference = b.pruned(seed, METHOD, target, options, need_model=True)
    arm, _, reference_folder = b.pruned_spec(seed, b.dense(seed), METHOD, target, options)
    print(f"{name}: bisecting the MAC target on measured latency against {arm}", flush=True)
    dense_folder = b.dense_spec(seed)[2]
    high = min(BRACKET[1], reachable(dense_folder, b.prune_cfg(METHOD, options)))
    ratio_at = _prober(b, seed, dense_folder, reference_folder, options, threads)
    reduction, trace = bisect_reduction(ratio_at, reference["macs_reduction"], high=high)
    b.store.save(name, inputs, {"seed": seed, "method": METHOD, "reference": arm, "reduction": reduction,
                                "probes": trace, "bracket": [BRACKET[0], high], "threads": threads})
    return reduction


def reachable(dense_folder: Path, cfg: Any) -> float:
    """The largest MAC reduction the prune settings `cfg` allow on the dense model (round_to
    and the layer cap bound it: 79 % for the PLDU preset at round_to 16), a little under it
    so that the target stays reachable after rounding."""
    import torch

    from pipeline.artifact import load_model
    from pipeline.pruning.removal import largest_reduction
    from pipeline.pruning.templates import attach_templates

    model, card = load_model(dense_folder)
    templates = attach_templates(model, torch.zeros(1, 3, card.cost_size, card.cost_size))
    templates.round_to, templates.max_removed = cfg.round_to, cfg.max_layer_pruning
    return round(largest_reduction(templates) - 0.001, 4)


def _prober(b: Any, seed: int, dense_folder: Path, reference_folder: Path, options: dict[str, Any] | None,
            threads: int) -> Callable[[float], float]:
    """ratio_at(reduction): HQS-L0's pruned model at that MAC target, timed against the reference."""
    from pipeline.artifact import load_model
    from pipeline.pruning.run import prune
    from pipeline.speed import paired_ratio, time_as_onnx

    reference = load_model(reference_folder)

    def ratio_at(reduction: float) -> float:
        with tempfile.TemporaryDirectory(prefix="matched-") as logs:
            model, card, _ = prune(dense_folder, b.data, METHOD, reduction, b.prune_cfg(METHOD, options),
                                   b.sections["trainer"], seed, Path(logs))
        timed = time_as_onnx({"reference": reference, "probe": (model, card)}, "reference", *SIZE, threads,
                             rounds=ROUNDS)
        ratio = paired_ratio(timed["probe"]["times_ms"], timed["reference"]["times_ms"])
        print(f"  MAC target {reduction:.4f}: {timed['probe']['median_ms']:.1f} ms, "
              f"{ratio:.3f}x the latency arm's time", flush=True)
        return ratio

    return ratio_at
