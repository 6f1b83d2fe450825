"""Stage `pick`: choose the model to ship by the rule of params.yaml's `pick` section.

The cheapest model (fewest GMACs or parameters, counted at the evaluation size, where the
report times latency) among the dense model and the sweep's fine-tuned runs whose val score
is at most `pick.max_iou_drop` below the dense one's; failed runs never qualify; the dense
model when nothing else does. Writes the choice, the rule, a one-line reason and the
candidates table (--out, JSON), and a copy of the chosen model folder (--ship) that
`export` converts, so export's DVC deps are exactly the shipped model; its model.json is the
shipped model's card (pipeline.model_card: commit, date, input size, test intervals,
intended use, known limits).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.artifact import META, load_model, write_json
from pipeline.card import ModelCard
from pipeline.measure import macs_and_params
from pipeline.model_card import ship_card
from pipeline.params import load_sections
from pipeline.pick import DENSE, choose, refuse_export_model
from pipeline.report.collect import evaluation_size, read_json, sweep_runs
from pipeline.selection import SCORE
from pipeline.stages._cli import add_paths, parser, run

FIGURES = (SCORE, "test/iou")  # what the rule reads (SCORE) and what it only reports (test)


def costs(folder: Path, size: tuple[int, int]) -> dict[str, float]:
    """GMACs and Mparams of a model folder at `size` (the size the report times latency at)."""
    model, _ = load_model(folder)
    macs, params = macs_and_params(model, *size)
    return {"gmacs": macs / 1e9, "mparams": params / 1e6}


def copy_folder(source: Path, target: Path, card: ModelCard | None = None) -> None:
    """Replace `target` with a copy of `source` (its model.json replaced by `card` if given),
    renamed into place so no half copy is read."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if card is not None:
        write_json(card.to_json(), tmp / META)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def candidates(reports: Path, checkpoints: Path, runs: list[str], size: tuple[int, int]
               ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Path]]:
    """(dense figures, {run: figures}, {name: model folder}): val and test scores from the
    stage records (the report's figures), costs counted on the models at `size`."""
    loss = read_json(reports / "loss.json")
    folders = {DENSE: checkpoints / "dense", **{r: checkpoints / "final" / r for r in runs}}
    scores = {DENSE: loss["candidates"][loss["winner"]],
              **{r: read_json(reports / "finetune" / f"{r}.json")["final"] for r in runs}}
    rows = {name: {**{k: scores[name][k] for k in FIGURES if k in scores[name]}, **costs(folders[name], size)}
            for name in folders}
    dense = rows.pop(DENSE)
    return dense, rows, folders


def main(argv: list[str] | None = None) -> None:
    """Choose the model to ship; write --out (JSON) and --ship (the model folder)."""
    p = parser(__doc__)
    add_paths(p, reports=("reports", "stage records folder"), checkpoints=("checkpoints", "model folders"),
              data=("data/prepared", "prepared data set (the evaluation size)"),
              out=("reports/pick.json", "the choice (JSON)"), ship=("checkpoints/ship", "the chosen model folder"))
    args = p.parse_args(argv)

    def body() -> None:
        refuse_export_model(args.params)
        cfg, sweep = load_sections(args.params, "pick", "sweep")
        size = evaluation_size(args.data)
        dense, runs, folders = candidates(args.reports, args.checkpoints, sweep_runs(sweep), size)
        picked = choose(dense, runs, cfg)
        picked.update(folder=str(folders[picked["choice"]]), cost_size=list(size))
        model, card = load_model(folders[picked["choice"]])
        copy_folder(folders[picked["choice"]], args.ship, ship_card(model, card, args.data, size))
        write_json(picked, args.out)
        print(f"ship {picked['choice']}: {picked['reason']}")

    run(body)


if __name__ == "__main__":
    main()
