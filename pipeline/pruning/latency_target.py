"""Pruning to a latency target: the table's cost model for a prune run, its reachability
check, and the pruned model's latency measured beside the prediction.

The decision is made on the table's prediction (deterministic, like MACs); the pruned model
is then timed on this machine when the table was made on it (same CPU and thread count),
interleaved with the dense model (pipeline/speed.py). A measured shortfall is recorded and
warned about, not refused: it is a measurement on a noisy machine, where a MAC shortfall is
arithmetic and stays an error (removal.check_achieved).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.card import ModelCard
from pipeline.errors import PipelineError
from pipeline.pruning.costs import LatencyCost, Target
from pipeline.pruning.templates import Templates

log = logging.getLogger(__name__)
ROUNDS = 20  # interleaved timing rounds of the pruned and the dense model


def latency_cost(templates: Templates, table_folder: Path | None, target: Target) -> LatencyCost:
    """The latency cost model of `templates` from the table in `table_folder`, steps of
    `templates.round_to` channels (1 if unset); one-line errors for a missing or foreign table."""
    from pipeline.latency.table import LatencyTable

    if table_folder is None:
        raise PipelineError(f"prune: a {target.kind} target needs --latency-table: a folder written by "
                            f"pipeline.latency.layers and timed on the device by deploy/time_layers.py")
    try:
        table = LatencyTable.from_folder(table_folder)
        return LatencyCost(templates, table, table.residual_ms(), templates.round_to or 1)
    except KeyError as err:  # a layer shape the table was not made for
        raise PipelineError(f"{table_folder}: {err.args[0]}") from None
    except (OSError, ValueError) as err:
        raise PipelineError(f"{table_folder}: {err}") from None


def check_latency_reachable(cost: LatencyCost, templates: Templates, reduction: float, target: Target) -> None:
    """Raise a one-line error when even the smallest keep set the rules allow is predicted
    slower than the target (or the target is not below the dense model's prediction)."""
    if reduction <= 0:
        raise PipelineError(f"prune: the target {target} is not below the dense model's predicted "
                            f"{cost.dense:.1f} ms")
    smallest = cost.kept(templates.legal(torch.zeros(templates.entries, dtype=torch.bool), -templates.cost))
    if smallest > cost.budget(reduction):
        raise PipelineError(f"prune: the target {target} ({cost.budget(reduction):.1f} ms) is out of reach: the "
                            f"table predicts at least {smallest:.1f} ms with every channel the rules let go removed; "
                            f"relax prune.max_layer_pruning / prune.round_to or aim higher")


def same_device(fingerprint: dict[str, Any], threads: int | None) -> bool:
    """Whether a table timed on `fingerprint` describes this machine (CPU name and threads)."""
    from pipeline.machine import cpu_name

    return fingerprint.get("cpu") == cpu_name() and (threads is None or fingerprint.get("threads") == threads)


def measure(pruned: nn.Module, dense: nn.Module, card: ModelCard, size: tuple[int, int], threads: int
            ) -> dict[str, float]:
    """Median ms of the pruned and the dense model as ONNX (batch 1, `size`), interleaved,
    and the median paired speed-up."""
    from pipeline.export import export_onnx
    from pipeline.speed import interleaved, onnx_runner

    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for name, model in (("dense", dense), ("pruned", pruned)):
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, card, path, *size)
            runners[name] = onnx_runner(path, *size, threads)
        timed = interleaved(runners, "dense", rounds=ROUNDS, desc="prune: timing the pruned and the dense model")
    return {"measured_ms": timed["pruned"]["median_ms"], "dense_measured_ms": timed["dense"]["median_ms"],
            "measured_speedup": timed["pruned"]["speedup"]}


def latency_record(cost: LatencyCost, keep: torch.Tensor, reduction: float, target: Target,
                   pruned: nn.Module, dense: nn.Module, card: ModelCard) -> dict[str, Any]:
    """The prune record's `latency` block: target, budget, predictions, and the measurement on
    this machine when the table was timed here (else why not); warns on a measured shortfall."""
    table = cost.table
    record: dict[str, Any] = {"target": target.kind, "value": target.value, "budget_ms": cost.budget(reduction),
                              "predicted_ms": cost.kept(keep), "dense_predicted_ms": cost.dense,
                              "residual_ms": cost.residual_ms, "size": list(table.size), "device": table.fingerprint}
    threads = table.fingerprint.get("threads")
    if not same_device(table.fingerprint, threads):
        record["not_measured"] = f"the table was timed on {table.fingerprint.get('cpu')!r}, not on this machine"
        return record
    record.update(measure(pruned, dense, card, table.size, int(threads or torch.get_num_threads())))
    if record["measured_ms"] > record["budget_ms"]:
        log.warning("prune: the pruned model measured %.1f ms on this machine, over the %.1f ms target (the table "
                    "predicted %.1f ms)", record["measured_ms"], record["budget_ms"], record["predicted_ms"])
    return record
