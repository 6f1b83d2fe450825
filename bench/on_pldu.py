"""A trained model on all 120 PLD-UAV photos: what the default `dvc repro`'s model does on real wires.

Scores a model folder (default: `checkpoints/ship`, the model the default pipeline ships) at
its own stored threshold on every image of PLDU's train, val and test splits (the fixed split
of data/splits/pldu.json; the masks rasterised from the BSDS .mat files by the `pld-uav`
source, at the photos' own size). Strict line IoU and tolerance F1 with BCa 95 % intervals
over the images. Meant for models that never saw PLDU (the synthetic default): for a model
trained on PLDU only its test split is a fair score, and `bench.pldu` reports that.

    python -m bench.on_pldu                                   # checkpoints/ship -> bench/results/on_pldu.{json,md}
    python -m bench.on_pldu --model checkpoints/final/hqs_l0-0.5 --name hqs_l0 --out /tmp/scores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from bench.records import ROOT, environment, weights_hash
from bench.tables import write_results
from pipeline.artifact import load_model
from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.prepare import prepare
from pipeline.intervals import bca
from pipeline.params import load_params
from pipeline.scoring import COUNTS, scores, split_counts

PLDU = ROOT.parent / "shared" / "datasets" / "pld-uav" / "PLDU"
SPLITS = ("train", "val", "test")


def prepared_pldu(work: Path) -> Path:
    """PLDU prepared once under `work` (the fixed split), or exit naming where it is missing."""
    if not PLDU.exists():
        sys.exit(f"skipped: the PLDU data is not at {PLDU} (put PLD-UAV's PLDU folder there)")
    data = work / "pldu"
    if not (data / "manifest.json").exists():
        cfg = PrepareCfg(source="pld-uav", root=str(PLDU), split_file=str(ROOT / "data" / "splits" / "pldu.json"))
        prepare(cfg, BaseCfg(), data)
    return data


def score_images(model: torch.nn.Module, data: Path, threshold: float, n_resamples: int) -> dict[str, Any]:
    """Per split and over all images: strict IoU and tolerance F1 with BCa intervals over images."""
    tables = {split: split_counts(model, data, threshold, split) for split in SPLITS}
    tables["all"] = {key: [v for split in SPLITS for v in tables[split][key]] for key in ("names", *COUNTS)}
    out = {}
    for name, table in tables.items():
        counts = {key: table[key] for key in COUNTS}
        out[name] = {"images": len(table["names"]),
                     "iou": bca(counts, lambda c: scores(c)["iou"], n_resamples),
                     "tol_f1": bca(counts, lambda c: scores(c)["tol_f1"], n_resamples)}
    return out


def markdown(result: dict[str, Any]) -> str:
    """The scores per split, and what was scored."""
    def cell(stat: dict[str, Any]) -> str:
        return f"{stat['mean']:.3f} [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]"

    dirty = " (with uncommitted changes)" if result.get("dirty") else ""
    lines = [f"# `{result['model']}` on the PLD-UAV photos", "",
             f"Commit {result['commit'][:10]}{dirty}; the model's own threshold {result['threshold']:.3f}; trained on "
             f"`{result['trained_on']}`; weights {result['weights']}. Strict line IoU and tolerance F1 over the "
             "images' summed counts, BCa 95 % intervals over images.", "",
             "| images | n | strict IoU | tolerance F1 |", "|---|---|---|---|"]
    for name, row in result["splits"].items():
        lines.append(f"| {name} | {row['images']} | {cell(row['iou'])} | {cell(row['tol_f1'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Score --model on every PLDU photo; write --out/<name>.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "checkpoints" / "ship", help="model folder")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work", help="where PLDU is prepared (not committed)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    p.add_argument("--name", default="on_pldu", help="results file name (default: on_pldu)")
    p.add_argument("--bootstrap", type=int, default=4999, help="BCa resamples (default: 4999)")
    args = p.parse_args(argv)
    if not (args.model / "model.json").exists():
        sys.exit(f"{args.model}: not a model folder (no model.json); run dvc repro first")
    model, card = load_model(args.model)
    data = prepared_pldu(args.work)
    synthetic = load_params(ROOT / "params.yaml")["prepare"].get("synthetic", {})
    trained_on = card.training_data.source if card.training_data else "unknown"
    if trained_on == "synthetic":
        trained_on += f" ({synthetic.get('renderer', 'scenes')} renderer, params.yaml at this commit)"
    result = {"model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
              "weights": weights_hash(args.model), "threshold": card.threshold, "trained_on": trained_on,
              **environment(), "splits": score_images(model, data, card.threshold, args.bootstrap)}
    write_results(args.out, args.name, result, markdown(result))


if __name__ == "__main__":
    main()
