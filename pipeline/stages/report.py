"""Stage `report`: every model the pipeline produced, accuracy against cost, in
reports/report.md and a self-contained reports/report.html, plus reports/report.json
(for `dvc metrics show`) and reports/pareto.json (for `dvc plots show`).

Latency: batch 1 at the evaluation size, `report.threads` threads, warm-up, the dense and
every fine-tuned model interleaved round by round, eager PyTorch and ONNX Runtime; speed-up
= median over rounds of the paired ratio to dense. Peak memory: a fresh process per model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipeline.artifact import load_card, save_model, write_json
from pipeline.config import ModelCfg
from pipeline.models import create_model
from pipeline.params import load_sections
from pipeline.plots import template_histograms
from pipeline.pruning.artifact import load_pruned
from pipeline.report.collect import curves, evaluation_size, gather, model_rows, read_json
from pipeline.report.figures import channels_per_layer, pareto, prediction_panel, training_curves
from pipeline.report.render import model_table, prune_notes, to_html
from pipeline.report.timing import DENSE, measure_models, speed_notes
from pipeline.stages._cli import add_paths, parser, run

STAGES = ("baseline", "augment", "loss", "prune", "finetune")


def other_networks(rows: dict, folder: Path, num_classes: int) -> dict[str, Path]:
    """Baseline candidates of another size than the dense model, saved untrained under
    `folder` for timing (latency and memory depend on the network, not on its weights)."""
    dense = next(r for r in rows.values() if r["kind"] == "dense")
    found = {}
    for name, row in rows.items():
        if row["kind"] == "candidate" and row.get("network") and row["mparams"] != dense["mparams"]:
            cfg = ModelCfg.model_validate(row["network"])
            found[name] = folder / name.replace(" ", "_")
            save_model(create_model(cfg, num_classes), found[name], {"model": cfg.model_dump(),
                                                                     "num_classes": num_classes})
    return found


def attach_speed(rows: dict, speed: dict) -> None:
    """Give every row the figures of the measured network it is: pruned and final rows their
    run's, other-sized candidates their own, the rest (same network) the dense model's."""
    dense = next(r for r in rows.values() if r["kind"] == "dense")
    for name, row in rows.items():
        if row["kind"] in ("pruned", "final") and row["run"] in speed:
            row.update(speed[row["run"]])
        elif name in speed:
            row.update(speed[name])
        elif row["mparams"] == dense["mparams"]:
            row.update(speed[DENSE])


def figure_sections(rows: dict, records: dict, folders: dict[str, Path], args: argparse.Namespace,
                    panel_images: int, final: str) -> list[str]:
    """Draw the figures into args.plots; return their Markdown sections."""
    figures = args.plots
    pareto(rows, figures / "iou_vs_gmacs.png")
    sections = ["## Accuracy vs cost", "![IoU vs GMACs](figures/iou_vs_gmacs.png)"]
    if records["prune"]:
        channels_per_layer(records["prune"], figures / "channels_per_layer.png")
        sections += ["## Pruning", "\n".join(prune_notes(records["prune"])),
                     "![channels per layer](figures/channels_per_layer.png)"]
    with_templates = {n: r["templates"] for n, r in records["prune"].items() if "templates" in r}
    if with_templates:
        template_histograms(with_templates, figures / "template_magnitudes.png")
        sections.append("![template magnitudes](figures/template_magnitudes.png)")
    training_curves({stage: {m: curves(args.logs / stage, m) for m in ("val/iou", "train/loss_epoch")}
                     for stage in STAGES}, figures / "training_curves.png")
    sections += ["## Training curves", "![training curves](figures/training_curves.png)"]
    final = final if final in records["finetune"] else next(iter(records["finetune"]), None)
    shown = {"dense": DENSE, **({f"final {final}": final} if final else {})}
    models = {label: load_pruned(folders[key]) for label, key in shown.items()}
    prediction_panel(args.data, {label: (m, meta["threshold"]) for label, (m, meta) in models.items()},
                     panel_images, figures / "predictions.png")
    return [*sections, "## Test predictions", "![predictions](figures/predictions.png)"]


def export_section(path: Path) -> list[str]:
    """What the export stage recorded, if it ran."""
    if not path.exists():
        return []
    r = read_json(path)
    return ["## Export", f"`{r['onnx']}` (from `{r['model']}`), ONNX opset {r['opset']}, {r['bytes'] / 1e6:.1f} MB; "
            f"max |ONNX Runtime - PyTorch| logit difference {r['max_abs_diff']:.2e} on {r['check_images']} test "
            f"images. Metadata: normalisation, classes, threshold {r['threshold']:.2f}, opset."]


def main(argv: list[str] | None = None) -> None:
    """Read the stage records and models; measure; write the report files and figures."""
    p = parser(__doc__)
    add_paths(p, reports=("reports", "stage records folder"), checkpoints=("checkpoints", "model folders"),
              data=("data/prepared", "prepared data set"), logs=("logs", "training curves (DVCLive)"),
              out=("reports/report.md", "Markdown report"), html=("reports/report.html", "HTML report"),
              metrics=("reports/report.json", "every model's figures"), points=("reports/pareto.json", "plot data"),
              plots=("reports/figures", "figures folder"))
    args = p.parse_args(argv)

    def body() -> None:
        cfg, export = load_sections(args.params, "report", "export")
        records = gather(args.reports)
        rows = model_rows(records)
        size = evaluation_size(args.data)
        folders = {DENSE: args.checkpoints / "dense",
                   **{run: args.checkpoints / "final" / run for run in records["finetune"]}}
        with tempfile.TemporaryDirectory(prefix="report-networks-") as tmp:
            num_classes = load_card(folders[DENSE]).num_classes
            speed = measure_models({**folders, **other_networks(rows, Path(tmp), num_classes)}, size, cfg)
        attach_speed(rows, speed)
        sections = figure_sections(rows, records, folders, args, cfg.panel_images, export.model)
        sections += export_section(args.reports / "export.json")
        text = "\n\n".join([
            "# Power-line segmentation: accuracy vs cost", model_table(rows), explain(size, cfg, records),
            "## Speed", "\n".join(speed_notes(rows, speed)) or "no fine-tuned models",
            *sections])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.html.write_text(to_html(text, args.out.parent, "power-line segmentation report"))
        write_json({name: {k: v for k, v in row.items() if isinstance(v, float | int)} for name, row in rows.items()},
                   args.metrics)
        write_json([{"model": name, "kind": r["kind"], "gmacs": r["gmacs"], "test_iou": r["test/iou"]}
                    for name, r in rows.items()], args.points)
        print(model_table(rows))

    run(body)


def explain(size: tuple[int, int], cfg, records: dict) -> str:
    """How the table's figures were measured."""
    cost = records["studies"]["baseline"]["cost_size"]
    return (f"IoU, mIoU, F1: power-line class, pixels summed over the test split, strict (no distance "
            f"tolerance), at the threshold tuned on val. Tol. F1: precision = share of predicted line pixels "
            f"within 0.0075 of the image diagonal of a true line pixel, recall = share of true line pixels "
            f"within that distance of a predicted one; not directly comparable with BSDS ODS (which thins "
            f"predictions and matches one to one). GMACs and Mparams at {cost}x{cost} (Torch-Pruning's "
            f"counter). Latency: batch 1 at the evaluation size {size[0]}x{size[1]}, {cfg.threads} threads, "
            f"{cfg.warmup} warm-up runs, {cfg.rounds} rounds with the models interleaved; 'x dense' = median "
            f"over rounds of the paired ratio dense time / model time. Pruned rows share their fine-tuned "
            f"model's network, study rows the dense one's. Peak MB: peak resident memory of a fresh process "
            f"that loads the model and runs one image (runtime included). Baseline candidates of another "
            f"size than the dense model are timed as untrained networks of their architecture.")


if __name__ == "__main__":
    main()
