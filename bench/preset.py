"""The PLDU benchmark's preset (bench/pldu.yaml): its `bench` section and the pipeline
sections it reads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from bench.records import ROOT, load_bench_config
from pipeline.config import BaseCfg, PrepareCfg, Strict
from pipeline.data.prepare import prepare
from pipeline.pruning.registry import check_method

USED = ("base", "prepare", "model", "train", "trainer", "prune", "finetune")  # the pipeline sections read


class BenchCfg(Strict):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["hqs_l0", "magnitude"])
    macs_reductions: list[float] = Field(default_factory=lambda: [0.5, 0.75])
    within: float = Field(0.01, gt=0)  # "recovered": val score within this of the dense model's
    tune: dict[str, dict[str, list[float]]] = Field(default_factory=dict)  # method -> option -> values tried
    # extra arms of a method with other settings, common prune keys or its own options (issue 15's
    # round_to study: hqs_l0: [{round_to: 8}, {round_to: 16}]); every seed and target
    variants: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    # issue 15: arms pruned to a share of the dense model's predicted latency (the table's residual
    # makes that the measured one) through this machine's device table (bench/device_table.py)
    latency_targets: list[float] = Field(default_factory=list)
    latency_methods: list[str] = Field(default_factory=list)
    latency_step: int = Field(8, ge=1)  # the table's grid step: use prune.round_to if it is set
    tails: dict[str, dict[str, Any]] = Field(default_factory=dict)  # bench.tail: decoder and head options
    tune_seed: int = 0
    tune_target: float = 0.75
    bootstrap: int = Field(4999, ge=100)
    bsds: bool = True

    @model_validator(mode="after")
    def _known_methods(self) -> BenchCfg:
        for name in [*self.methods, *self.tune, *self.variants, *self.latency_methods]:
            check_method(name)
        if bool(self.latency_targets) != bool(self.latency_methods):
            raise ValueError("bench.latency_targets and bench.latency_methods go together")
        for key in ("tune", "variants", "latency_methods"):
            unknown = set(getattr(self, key)) - set(self.methods)
            if unknown:
                raise ValueError(f"bench.{key} names methods not in bench.methods: {', '.join(sorted(unknown))}")
        return self


def load_config(path: Path) -> tuple[BenchCfg, dict[str, Any]]:
    """The `bench` section and the validated pipeline sections of the preset."""
    return load_bench_config(path, BenchCfg, USED)


def prepared_data(cfg: PrepareCfg, base: BaseCfg, out: Path) -> Path:
    """A benchmark's real data, prepared once into `out` (the preset's `prepare.root` and
    `split_file` are relative to the project), or exit naming where the data is missing."""
    source = (ROOT / cfg.root).resolve()
    if not source.exists():
        sys.exit(f"skipped: the data is not at {source} (for PLDU, put PLD-UAV's PLDU folder there)")
    if not (out / "manifest.json").exists():
        split_file = str(ROOT / cfg.split_file) if cfg.split_file else None
        prepare(cfg.model_copy(update={"root": str(source), "split_file": split_file}), base, out)
    return out

