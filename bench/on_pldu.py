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

import numpy as np
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


def per_photo(table: dict[str, list]) -> dict[str, Any]:
    """Per-photo tolerance recall and precision: their medians and how many photos fall
    short (recall under 0.5: wires missed; precision under 0.3: mostly false alarms).
    Photos without line pixels, or without predictions, have no recall, or precision."""
    recall = [hit / n for hit, n in zip(table["tol_true_hit"], table["tol_true"], strict=True) if n]
    precision = [hit / n for hit, n in zip(table["tol_pred_hit"], table["tol_pred"], strict=True) if n]
    return {"median_tol_recall": float(np.median(recall)) if recall else None,
            "recall_under_0.5": sum(r < 0.5 for r in recall),
            "median_tol_precision": float(np.median(precision)) if precision else None,
            "precision_under_0.3": sum(r < 0.3 for r in precision)}


def score_images(model: torch.nn.Module, data: Path, threshold: float, n_resamples: int) -> dict[str, Any]:
    """The test split, the train split (what the renderer was iterated against) and all
    images: strict IoU and tolerance F1 with BCa intervals over images, and per-photo figures."""
    tables = counts(model, data, threshold)
    every = tables["all_counts"]
    train_names = {path.stem for path in (data / "train" / "images").iterdir()}
    train = {key: [v for name, v in zip(every["names"], every[key], strict=True) if name in train_names]
             for key in every}
    out = {}
    for name, table in (("test", tables["test_counts"]), ("train", train), ("all", every)):
        per_image = {key: table[key] for key in COUNTS}
        out[name] = {"images": len(table["names"]),
                     "iou": bca(per_image, lambda c: scores(c)["iou"], n_resamples),
                     "tol_f1": bca(per_image, lambda c: scores(c)["tol_f1"], n_resamples),
                     "per_photo": per_photo(table)}
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
             "| images | n | strict IoU | tolerance F1 | median tol. recall | recall < 0.5 "
             "| median tol. precision | precision < 0.3 |", "|---|---|---|---|---|---|---|---|"]
    for name, row in result["splits"].items():
        photo = {key: "-" if value is None else f"{value:.2f}" if isinstance(value, float) else value
                 for key, value in row["per_photo"].items()}
        lines.append(f"| {name} | {row['images']} | {cell(row['iou'])} | {cell(row['tol_f1'])} "
                     f"| {photo['median_tol_recall']} | {photo['recall_under_0.5']} "
                     f"| {photo['median_tol_precision']} | {photo['precision_under_0.3']} |")
    lines += ["", "Per photo: tolerance recall and precision of each photo on its own; the counts are photos "
              "(recall under 0.5: wires missed; precision under 0.3: mostly false alarms)."]
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
