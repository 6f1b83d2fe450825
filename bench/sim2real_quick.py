"""A quick transfer check: train on one synthetic renderer, score on the 80 PLDU training images.

Trains the params.yaml `model` with its `train` section (fewer epochs) on a small synthetic
set of `--renderer` (scenes or wires), keeps the best synthetic-val checkpoint and its
tuned threshold, then scores whole PLDU images of the fixed split's train part (never its
test part: the renderer is tuned against these). One seed, one torch thread: a smoke
check of the direction, not the issue-18 benchmark.

    python -m bench.sim2real_quick --renderer wires --n-train 300 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from pipeline.artifact import write_json
from pipeline.data.prepare import prepare
from pipeline.params import SECTIONS, load_params, parse_section
from pipeline.scoring import COUNTS, image_counts, scores, split_probabilities
from pipeline.train import fit

ROOT = Path(__file__).resolve().parent.parent
PLDU = ROOT.parent / "shared" / "datasets" / "pld-uav" / "PLDU"


def sections() -> dict:
    """The validated params.yaml sections this check uses."""
    params = load_params(ROOT / "params.yaml")
    names = ("base", "prepare", "model", "train", "trainer")
    return {name: parse_section(params, name, SECTIONS[name], "params.yaml") for name in names}


def prepared_pldu(work: Path, cfg: dict) -> Path:
    """PLDU prepared once with the committed split (train part used here)."""
    data = work / "pldu"
    if not (data / "manifest.json").exists():
        pldu = cfg["prepare"].model_copy(update={"source": "pld-uav", "root": str(PLDU),
                                                 "split_file": str(ROOT / "data" / "splits" / "pldu.json")})
        prepare(pldu, cfg["base"], data)
    return data


def prepared_synthetic(work: Path, cfg: dict, renderer: str, n_train: int) -> Path:
    """A small synthetic set of the chosen renderer (192 x 192)."""
    data = work / f"synthetic-{renderer}-{n_train}"
    if not (data / "manifest.json").exists():
        synthetic = cfg["prepare"].synthetic.model_copy(update={"renderer": renderer, "n_train": n_train,
                                                                "n_val": 40, "n_test": 8})
        prepare(cfg["prepare"].model_copy(update={"synthetic": synthetic}), cfg["base"], data)
    return data


def main(argv: list[str] | None = None) -> None:
    """Train, score PLDU train images at the tuned threshold and at 0.5, write a JSON record."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--renderer", choices=("scenes", "wires"), required=True)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "sim2real_quick")
    args = p.parse_args(argv)
    if not PLDU.exists():
        sys.exit(f"skipped: the PLDU data is not at {PLDU}")
    torch.set_num_threads(1)
    cfg = sections()
    started = time.time()
    data = prepared_synthetic(args.work, cfg, args.renderer, args.n_train)
    rendered = time.time() - started
    train = cfg["train"].model_copy(update={"epochs": args.epochs})
    run = args.work / f"{args.renderer}-{args.n_train}-e{args.epochs}-s{args.seed}"
    result = fit(cfg["model"], train, cfg["trainer"], data, run / "logs", args.seed, cfg["base"].num_classes)
    trained = time.time() - started - rendered
    torch.save(result.module.model.state_dict(), run / "model.pt")  # to look at its PLDU predictions
    pldu = prepared_pldu(args.work, cfg)
    record = {"renderer": args.renderer, "n_train": args.n_train, "epochs": args.epochs, "seed": args.seed,
              "synthetic_val": result.metrics, "threshold": result.threshold,
              "render_seconds": rendered, "train_seconds": trained}
    thresholds = {"tuned": result.threshold, "0.5": 0.5}
    counts = {name: {key: [] for key in COUNTS} for name in thresholds}
    for _, prob, mask in split_probabilities(result.module.model, pldu, split="train"):
        for name, threshold in thresholds.items():
            for key, value in image_counts(prob, mask, threshold).items():
                counts[name][key].append(value)
    for name, table in counts.items():
        record[f"pldu_train@{name}"] = {key: float(value) for key, value in scores(table).items()}
    write_json(record, run / "record.json")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
