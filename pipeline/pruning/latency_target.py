"""Pruning to a latency target: the table's cost model for a prune run, its reachability
check, and the pruned model's latency measured beside the prediction.

The decision is made on the table's prediction (deterministic, like MACs); the pruned model
is then timed on this machine when the table was made on it (same CPU and thread count),
interleaved with the dense model (pipeline/speed.py). A measured shortfall is recorded and
warned about, not refused: it is a measurement on a noisy machine, where a MAC shortfall is
arithmetic and stays an error (removal.check_achieved).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pipeline.card import ModelCard
from pipeline.errors import PipelineError
from pipeline.latency.layers import conv_layers
from pipeline.pruning.costs import Target
from pipeline.pruning.templates import Templates

if TYPE_CHECKING:
    from pipeline.latency.table import LatencyTable

log = logging.getLogger(__name__)
ROUNDS = 20  # interleaved timing rounds of the pruned and the dense model
# an entry whose removal saves nothing (or, at a layout step, costs time) still gets a cost
# above 0: the z-step divides by it, and a tiny cost keeps the entry (it buys nothing to drop)
LEAST_COST_MS = 1e-6


class LatencyCost:
    """Predicted milliseconds of the model with a keep set, from a device's latency table."""

    unit = "ms"

    def __init__(self, templates: Templates, table: LatencyTable, residual_ms: float, step: int = 1) -> None:
        self.templates, self.table, self.residual_ms, self.step = templates, table, residual_ms, max(step, 1)
        self.layers = conv_layers(templates.model, *table.size)
        n = templates.entries
        # per layer, how many of its input / output channels each entry carries (column n: the
        # channels never pruned), so widths(keep) is one matrix product; a depthwise conv's
        # entries are filed on its output side only (Torch-Pruning's way), and c_in = c_out
        self.ins = torch.stack([torch.bincount(templates.maps[layer.name][layer.shape.depthwise], minlength=n + 1)
                                for layer in self.layers]).double()
        self.outs = torch.stack([torch.bincount(templates.maps[layer.name][1], minlength=n + 1)
                                 for layer in self.layers]).double()
        everything = torch.ones(n, dtype=torch.bool)
        self.dense = self.kept(everything)
        self.dense_per_entry = self._per_entry(everything, fallback=None)

    def widths(self, keep: Tensor) -> tuple[list[int], list[int]]:
        """(c_in, c_out) of every convolution with only the `keep` entries."""
        k = torch.cat([keep.double(), torch.ones(1, dtype=torch.float64)])
        return (self.ins @ k).round().long().tolist(), (self.outs @ k).round().long().tolist()

    def kept(self, keep: Tensor) -> float:
        c_in, c_out = self.widths(keep)
        layers = [dataclasses.replace(layer, c_in=i, c_out=o) for layer, i, o in zip(self.layers, c_in, c_out,
                                                                                      strict=True)]
        return self.table.predict(layers, self.residual_ms).total_ms

    def per_entry(self, keep: Tensor) -> Tensor:
        return self._per_entry(keep, fallback=self.dense_per_entry)

    def _per_entry(self, keep: Tensor, fallback: Tensor | None) -> Tensor:
        """Per entry: its group's predicted saving when `step` more of its kept entries go,
        per entry removed. A group with one entry kept (the rules keep it) takes its cost from
        `fallback` (the dense widths')."""
        now = self.kept(keep)
        cost = torch.full((self.templates.entries,), LEAST_COST_MS)
        for group in self.templates.groups:
            part = slice(group.offset, group.offset + group.size)
            kept = keep[part].nonzero().flatten() + group.offset
            count = min(self.step, len(kept) - 1)
            if count < 1:
                if fallback is not None:
                    cost[part] = fallback[part]
                continue
            fewer = keep.clone()
            fewer[kept[:count]] = False  # which ones does not matter: widths only count them
            cost[part] = max((now - self.kept(fewer)) / count, LEAST_COST_MS)
        return cost

    def budget(self, reduction: float) -> float:
        return self.dense * (1 - reduction)


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
    """Median ms of the pruned and the dense model as ONNX (batch 1, static `size`: the form
    the table's residual was timed in), interleaved, and the median paired speed-up."""
    from pipeline.speed import time_as_onnx

    timed = time_as_onnx({"dense": (dense, card), "pruned": (pruned, card)}, "dense", *size, threads, ROUNDS,
                         desc="prune: timing the pruned and the dense model")
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
    if not same_device(table.fingerprint, None):  # timed below with the table's own thread count
        record["not_measured"] = f"the table was timed on {table.fingerprint.get('cpu')!r}, not on this machine"
        return record
    threads = int(table.fingerprint.get("threads") or torch.get_num_threads())
    record.update(measure(pruned, dense, card, table.size, threads))
    if record["measured_ms"] > record["budget_ms"]:
        log.warning("prune: the pruned model measured %.1f ms on this machine, over the %.1f ms target (the table "
                    "predicted %.1f ms)", record["measured_ms"], record["budget_ms"], record["predicted_ms"])
    return record


class LatencyPlan:
    """What `run.prune` does differently for a latency target (`costs.TargetPlan`): `attach`
    puts the table's cost model on the templates and checks the target is in reach; `record`
    fills the record's `latency` block once the model is pruned."""

    def __init__(self, table_folder: Path | None) -> None:
        self.table_folder = table_folder

    def attach(self, templates: Templates, target: Target) -> float:
        """Set `templates.cost_model`; returns the share of the predicted latency to remove."""
        self.target, self.cost = target, latency_cost(templates, self.table_folder, target)
        templates.cost_model = self.cost
        self.reduction = target.reduction(self.cost.dense)
        check_latency_reachable(self.cost, templates, self.reduction, target)
        return self.reduction

    def record(self, keep: Tensor, pruned: nn.Module, dense: nn.Module, card: ModelCard) -> dict[str, Any]:
        return latency_record(self.cost, keep, self.reduction, self.target, pruned, dense, card)
