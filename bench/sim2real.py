"""The sim2real benchmark (issue 18): does synthetic pretraining help on real power-line photos?

Arms, per seed: `synthetic` (the synthetic set alone, the `pretrain` settings); `pldu` (the
80 PLDU training images alone, `train.epochs`); `pretrain_finetune` (the synthetic arm's
model, then `train.epochs` on PLDU); `pldu_equal_steps` (PLDU alone with as many optimiser
steps as pretraining + fine-tuning took); and `synthetic_outline` / `outline_finetune`, the
first and third on the same images with PLD-UAV-shaped labels (bench/sim2real_outline.py: does
pretraining on wire edges rather than whole wires help?). Checkpoints are selected on val only; every
threshold is tuned on PLDU val. Scores: the 20 PLDU test images (strict IoU, tolerance F1,
BCa intervals), and all 120 images for the synthetic arms only (the others trained and
selected on PLDU's train and val images); training time per arm.

Each run writes a small JSON record under bench/results/sim2real/ carrying the hashes of
its code, data, starting model and config (bench/records.py): rerun the command and it
skips what is current, re-runs what changed, and rewrites sim2real.{json,md}. The PLDU-only
arms' code hash leaves the synthetic generator out (they never run it), so a renderer
change re-runs only the synthetic and pretrain_finetune arms, on a synthetic set rendered
anew (kept under --work per version of the generator).

    python -m bench.sim2real                      # all of it (hours on 2 cores)
    python -m bench.sim2real --seeds 0 --arms pldu synthetic
    python -m bench.sim2real --summary-only       # re-aggregate the committed records
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from bench.preset import prepared_data
from bench.records import (
    ROOT,
    RecordStore,
    code_hash,
    code_text,
    config_hash,
    folder_hash,
    load_bench_config,
    module_files,
    weights_hash,
)
from pipeline.config import BaseCfg, Strict
from pipeline.pretrain import synthetic_set

ARMS = ("synthetic", "pldu", "pretrain_finetune", "pldu_equal_steps", "synthetic_outline", "outline_finetune")
PRETRAINING = ("synthetic", "synthetic_outline")  # arms trained on the synthetic set alone
STARTS = {"pretrain_finetune": "synthetic", "outline_finetune": "synthetic_outline"}  # fine-tuned: their start
OUTLINED = ("synthetic_outline", "outline_finetune")  # on outline labels (bench/sim2real_outline.py)
USED = ("base", "prepare", "model", "train", "trainer", "pretrain")  # the pipeline sections read
HASHED = ("base", "model", "train", "trainer")  # prepare: the data hash covers it (its paths are local)
# synthetic-generator files left out of the PLDU-only arms' code hash (they never run them);
# a generator file missing here (camera.py) only makes those arms re-run when it changes
GENERATOR = {Path("pipeline/data/sources") / name for name in
             ("synthetic.py", "wires.py", "terrain.py", "trees.py", "scenes.py", "backgrounds.py")}


class BenchCfg(Strict):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    arms: list[str] = Field(default_factory=lambda: list(ARMS), min_length=1)
    data_seed: int = Field(0, ge=0)  # one synthetic set for every training seed
    bootstrap: int = Field(4999, ge=100)

    @model_validator(mode="after")
    def _known_arms(self) -> BenchCfg:
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown:
            raise ValueError(f"unknown arms {unknown}; valid: {', '.join(ARMS)}")
        return self


def load_config(path: Path) -> tuple[BenchCfg, dict[str, Any]]:
    """The `bench` section and the validated pipeline sections of the preset."""
    bench, sections = load_bench_config(path, BenchCfg, USED)
    if sections["train"].early_stopping_patience:  # a stopped run would break the equal-steps control
        sys.exit(f"{path}: train.early_stopping_patience must be 0 (the arms compare fixed step budgets)")
    return bench, sections


class Sim2Real:
    """Runs (or reuses) the records of one preset; models live under `work`."""

    def __init__(self, bench: BenchCfg, sections: dict[str, Any], real: Path, synthetic: Path, work: Path,
                 records: Path) -> None:
        self.bench, self.sections, self.real, self.synthetic, self.work = bench, sections, real, synthetic, work
        self.store = RecordStore(records)
        self.real_hash, self.synthetic_hash = folder_hash(real), folder_hash(synthetic)
        self.dumped = {name: section.model_dump() for name, section in sections.items()}

    def equal_steps_epochs(self) -> int:
        """PLDU epochs with at least the steps of pretraining + fine-tuning."""
        from bench.sim2real_runs import steps_per_epoch

        pretrain, train = self.sections["pretrain"], self.sections["train"]
        synthetic_train = train.model_copy(update={"epochs": pretrain.epochs})
        steps = pretrain.epochs * steps_per_epoch(self.synthetic, synthetic_train)
        return train.epochs + math.ceil(steps / steps_per_epoch(self.real, train))

    def spec(self, seed: int, arm: str, start: str = "") -> tuple[str, dict[str, str], Path]:
        """A record's name, inputs (code, data, starting model, config) and model folder."""
        uses_synthetic = arm in PRETRAINING or arm in STARTS
        data = config_hash([self.real_hash, self.synthetic_hash]) if uses_synthetic else self.real_hash
        values = [[self.dumped[n] for n in HASHED], arm, seed]
        if arm in PRETRAINING:
            values += [self.dumped["pretrain"], self.bench.data_seed]
        if arm == "pldu_equal_steps":
            values.append(self.equal_steps_epochs())
        code = code_hash("bench.sim2real_runs") if uses_synthetic else real_code_hash()
        if arm in OUTLINED:  # the relabelling is code of these arms too
            code = config_hash([code, code_hash("bench.sim2real_outline")])
        inputs = {"code": code, "data": data, "start": start,
                  "config": config_hash(values)}
        return f"seed{seed}/{arm}", inputs, self.work / f"seed{seed}" / arm

    def run(self, seed: int, arm: str, need_model: bool = False) -> dict[str, Any]:
        """The current record of (seed, arm), else train it (and what it starts from)."""
        from bench.sim2real_runs import real_run, synthetic_run

        start, start_folder = "", None
        if arm in STARTS:
            pretrained = self.run(seed, STARTS[arm])
            start = pretrained["model_hash"]
        name, inputs, folder = self.spec(seed, arm, start)
        record = self.store.current(name, inputs)
        if record is not None and (not need_model or _holds(folder / "model", record["model_hash"])):
            return record
        if arm in STARTS:  # its start must be on this machine (retrained: its hash may move)
            pretrained = self.run(seed, STARTS[arm], need_model=True)
            name, inputs, folder = self.spec(seed, arm, pretrained["model_hash"])
            start_folder = self.spec(seed, STARTS[arm])[2] / "model"
        print(f"{time.strftime('%H:%M:%S')} {name}: running", flush=True)
        train_epochs = self.sections["train"].epochs
        if arm in PRETRAINING:
            images = self.outlined() if arm == "synthetic_outline" else self.synthetic
            body = {**synthetic_run(self.sections, images, self.real, folder, seed), "arm": arm}
        elif arm == "pldu_equal_steps":
            body = real_run(arm, self.sections, self.real, folder, seed, self.equal_steps_epochs())
        else:
            body = real_run(arm, self.sections, self.real, folder, seed, train_epochs, start_folder)
        if arm in STARTS:
            body.update(start_steps=pretrained["steps"], start_seconds=pretrained["seconds"])
        return self.store.save(name, inputs, {**body, "model_hash": weights_hash(folder / "model")})

    def outlined(self) -> Path:
        """The synthetic set with outline labels, made once beside it."""
        from bench.sim2real_outline import outline_set

        tag = code_hash("bench.sim2real_outline")
        return outline_set(self.synthetic, self.synthetic.with_name(f"{self.synthetic.name}-outline-{tag}"))

    def current(self, seed: int, arm: str) -> dict[str, Any] | None:
        """The current record of (seed, arm) without running anything (None: missing or stale)."""
        start = ""
        if arm in STARTS:
            pretrained = self.current(seed, STARTS[arm])
            if pretrained is None:
                return None
            start = pretrained["model_hash"]
        name, inputs, _ = self.spec(seed, arm, start)
        return self.store.current(name, inputs)


def files_hash(paths: set[Path]) -> str:
    """sha256 over the code (`code_text`) of project files, paths sorted."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path).encode() + b"\0" + code_text(ROOT / path).encode() + b"\0")
    return digest.hexdigest()[:16]


def real_code_hash() -> str:
    """The PLDU-only arms' code: the run module's import closure without the synthetic
    generator, so iterating on the renderer does not make those records stale."""
    return files_hash(module_files("bench.sim2real_runs") - GENERATOR)


def kept_set_folder() -> str:
    """Where the synthetic set is kept (made once): one folder per version of everything the
    synthetic source imports. A set kept by settings alone would survive a renderer change
    and feed the old images to the new code's records."""
    return f"generator-{code_hash('pipeline.data.sources.synthetic')}"


def _holds(model: Path, expected: str) -> bool:
    """Whether the model folder holds the weights with this hash."""
    return (model / "model.pt").exists() and weights_hash(model) == expected


def prepared(sections: dict[str, Any], bench: BenchCfg, work: Path, real: Path | None) -> tuple[Path, Path]:
    """The prepared PLDU data (or `real`, an already prepared folder) and the synthetic set."""
    if real is None:
        real = prepared_data(sections["prepare"], sections["base"], work / "pldu")
    base = BaseCfg(seed=bench.data_seed, towers=sections["base"].towers)
    with synthetic_set(sections["pretrain"], base, keep_in=work / kept_set_folder()) as synthetic:
        return real, synthetic


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the benchmark, then write bench/results/sim2real.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "bench" / "sim2real.yaml", help="benchmark preset")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "sim2real", help="models (not committed)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    p.add_argument("--data", type=Path, help="an already prepared real data folder instead of PLDU")
    p.add_argument("--seeds", type=int, nargs="+", help="override bench.seeds")
    p.add_argument("--arms", nargs="+", choices=ARMS, help="override bench.arms")
    p.add_argument("--summary-only", action="store_true", help="only re-aggregate the current records")
    args = p.parse_args(argv)
    bench, sections = load_config(args.config)
    bench = bench.model_copy(update={k: v for k, v in {"seeds": args.seeds, "arms": args.arms}.items() if v})
    real, synthetic = prepared(sections, bench, args.work, args.data)
    b = Sim2Real(bench, sections, real, synthetic, args.work, args.out / "sim2real")
    if not args.summary_only:
        for seed in bench.seeds:  # one whole seed after another
            for arm in bench.arms:
                b.run(seed, arm)
    from bench.sim2real_summary import write_summary

    write_summary(b, args.out, args.config)


if __name__ == "__main__":
    main()
