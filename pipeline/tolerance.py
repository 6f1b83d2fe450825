"""The one "fewest GMACs (or parameters) within a tolerance of a reference val score" rule,
shared by the studies (pipeline/study.py: the reference is the best variant) and the pick
stage (pipeline/pick.py: the reference is the dense model)."""

from __future__ import annotations

from typing import Any

from pipeline.selection import SCORE

# val scores are float32 sums: 0.42 - 0.41 must count as a drop of 0.01, not 0.0100000001
SLACK = 1e-9
# costs this close count as equal: runs pruned to one MAC target land within a fraction of a
# percent of each other, and that rounding must not outweigh a better val score
COST_TIE = 0.01


def within(score: float, reference: float, tolerance: float) -> bool:
    """Whether a val `score` is at most `tolerance` below `reference` (float slack included)."""
    return reference - score <= tolerance + SLACK


def same_cost(cost: float, fewest: float) -> bool:
    """Whether `cost` ties with the `fewest` one (within COST_TIE, relative)."""
    return cost <= fewest * (1 + COST_TIE)


def cheapest_within(rows: dict[str, dict[str, Any]], reference: float, tolerance: float,
                    objective: str = "gmacs") -> str:
    """Among the rows whose SCORE is `within` `tolerance` of `reference`, the name of the one
    with the fewest `objective`; costs within COST_TIE (relative) of the fewest count as tied,
    and ties go to the higher SCORE, then to the name (deterministic)."""
    close = [name for name, row in rows.items() if within(row[SCORE], reference, tolerance)]
    fewest = min(rows[name][objective] for name in close)
    tied = [name for name in close if same_cost(rows[name][objective], fewest)]
    return min(tied, key=lambda name: (-rows[name][SCORE], name))
