"""What a pruning target counts: MACs (the default) or predicted latency on a device.

A cost model answers three questions about a keep set (one bool per template entry,
`templates.py`), and every method asks them the same way (`hqs_l0.decide_by_score`,
`HqsL0.z_step`), so a method meets a latency target exactly as it meets a MAC target:

* `kept(keep)`: the cost of the model with only those entries;
* `per_entry(keep)`: what one entry costs at the current widths (HQS-L0's c_j);
* `budget(reduction)`: the cost allowed once it falls by the share `reduction`.

`MacCost` is the templates' own MAC model (it ignores the widths: a channel's MACs do not
depend on which others are kept, to first order). `latency_target.LatencyCost` predicts
milliseconds from a device's latency table; it lives there so that the pruning core does
not import the latency tooling.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor, nn

if TYPE_CHECKING:
    from pipeline.pruning.templates import Templates


class CostModel(Protocol):
    unit: str
    dense: float  # the modelled cost of the dense model

    def kept(self, keep: Tensor) -> float: ...

    def per_entry(self, keep: Tensor) -> Tensor: ...

    def budget(self, reduction: float) -> float: ...


class TargetPlan(Protocol):
    """How a prune run meets a target in another unit than MACs (latency_target.LatencyPlan):
    given by the caller, so the pruning core does not import what that unit needs."""

    def attach(self, templates: Templates, target: Target) -> float: ...

    def record(self, keep: Tensor, pruned: nn.Module, dense: nn.Module, card: Any) -> dict[str, Any]: ...


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
