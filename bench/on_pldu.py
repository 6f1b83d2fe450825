"""A trained model on all 120 PLD-UAV photos: what the default `dvc repro`'s model does on real wires.

Scores a model folder (default: `checkpoints/ship`, the model the default pipeline ships) at
its own stored threshold on PLDU's 20 test photos and on all 120 (the fixed split of
data/splits/pldu.json; the masks rasterised from the BSDS .mat files by the `pld-uav` source,
at the photos' own size; per-image counts as bench.sim2real scores them). Strict line IoU and
tolerance F1 with BCa 95 % intervals over the images. Meant for models that never saw PLDU
(the synthetic default): for a model trained on PLDU only its test split is a fair score, and
`bench.pldu` reports that.

    python -m bench.on_pldu                                   # checkpoints/ship -> bench/results/on_pldu.{json,md}
    python -m bench.on_pldu --model checkpoints/final/hqs_l0-0.5 --name hqs_l0 --out /tmp/scores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from bench.preset import prepared_data
from bench.records import ROOT, environment, weights_hash
from bench.sim2real_runs import counts
from bench.tables import write_results
from pipeline.artifact import load_model
from pipeline.config import BaseCfg, PrepareCfg
from pipeline.intervals import bca
from pipeline.scoring import COUNTS, scores

PLDU = PrepareCfg(source="pld-uav", root="../shared/datasets/pld-uav/PLDU", split_file="data/splits/pldu.json")


def score_images(model: torch.nn.Module, data: Path, threshold: float, n_resamples: int) -> dict[str, Any]:
    """The test split and all images: strict IoU and tolerance F1 with BCa intervals over images."""
    tables = counts(model, data, threshold)
    out = {}
    for name, table in (("test", tables["test_counts"]), ("all", tables["all_counts"])):
        per_image = {key: table[key] for key in COUNTS}
        out[name] = {"images": len(table["names"]),
                     "iou": bca(per_image, lambda c: scores(c)["iou"], n_resamples),
                     "tol_f1": bca(per_image, lambda c: scores(c)["tol_f1"], n_resamples)}
    return out


def markdown(result: dict[str, Any]) -> str:
    """The scores (test split, all images) and what was scored."""
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
    data = prepared_data(PLDU, BaseCfg(), args.work / "pldu")
    trained_on = card.training_data.source if card.training_data else "unknown"
    result = {"model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
              "weights": weights_hash(args.model), "threshold": card.threshold, "trained_on": trained_on,
              **environment(), "splits": score_images(model, data, card.threshold, args.bootstrap)}
    write_results(args.out, args.name, result, markdown(result))


if __name__ == "__main__":
    main()
