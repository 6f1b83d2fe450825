"""What a pruning target counts: MACs (the default) or predicted latency on a device.

A cost model answers three questions about a keep set (one bool per template entry,
`templates.py`), and every method asks them the same way (`hqs_l0.decide_by_score`,
`HqsL0.z_step`), so a method meets a latency target exactly as it meets a MAC target:

* `kept(keep)`: the cost of the model with only those entries;
* `per_entry(keep)`: what one entry costs at the current widths (HQS-L0's c_j);
* `budget(reduction)`: the cost allowed once it falls by the share `reduction`.

`MacCost` is the templates' own MAC model (it ignores the widths: a channel's MACs do not
depend on which others are kept, to first order). `LatencyCost` predicts milliseconds from
the device's latency table (pipeline/latency/table.py) over the model's convolutions at the
table's size, plus the table's measured residual (what the table cannot see); an entry's
cost is the predicted time saved when its group loses `step` channels at the current
widths, so it moves as neighbouring layers shrink and is recomputed at every decision.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from pipeline.latency.layers import conv_layers

if TYPE_CHECKING:
    from pipeline.latency.table import LatencyTable
    from pipeline.pruning.templates import Templates

# an entry whose removal saves nothing (or, at a layout step, costs time) still gets a cost
# above 0: the z-step divides by it, and a tiny cost keeps the entry (it buys nothing to drop)
LEAST_COST_MS = 1e-6


class CostModel(Protocol):
    unit: str
    dense: float  # the modelled cost of the dense model

    def kept(self, keep: Tensor) -> float: ...

    def per_entry(self, keep: Tensor) -> Tensor: ...

    def budget(self, reduction: float) -> float: ...


class MacCost:
    """MACs, as the templates model them (convs and BNs; the rest of the model is fixed)."""

    unit = "MACs"

    def __init__(self, templates: Templates) -> None:
        self.templates = templates
        self.dense = templates.dense_modelled

    def kept(self, keep: Tensor) -> float:
        return self.templates.kept_macs(keep)

    def per_entry(self, keep: Tensor) -> Tensor:
        return self.templates.cost

    def budget(self, reduction: float) -> float:
        return self.templates.budget(reduction)


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


KINDS = ("macs_reduction", "latency_reduction", "latency_ms")


@dataclasses.dataclass(frozen=True)
class Target:
    """What a prune run aims for: a share of the MACs or of the predicted latency to remove,
    or a predicted latency in ms (the latter two need a device's latency table)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown target {self.kind!r}; valid: {', '.join(KINDS)}")
        bounded = self.kind != "latency_ms"
        if not (0 < self.value < 1 if bounded else self.value > 0):
            raise ValueError(f"--{self.kind.replace('_', '-')} must lie in {'(0, 1)' if bounded else '(0, inf)'}, "
                             f"got {self.value}")

    @property
    def latency(self) -> bool:
        return self.kind != "macs_reduction"

    def reduction(self, dense: float) -> float:
        """The share of the cost model's dense cost (`dense`, ms for a latency target) to remove."""
        return 1 - self.value / dense if self.kind == "latency_ms" else self.value

    def __str__(self) -> str:
        return f"{self.value:g} ms" if self.kind == "latency_ms" else f"-{self.value:.0%} {self.kind.split('_')[0]}"
