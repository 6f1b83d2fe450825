"""The whole report: read the records of the current sweep and the pick stage's choice, time the
models, draw, write the files (the verdict on the model to ship first)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifact import load_card, load_model, save_model, write_json
from pipeline.config import ModelCfg, ReportCfg, SweepCfg
from pipeline.models import create_model
from pipeline.pick import DENSE as PICKED_DENSE
from pipeline.plots import template_histograms
from pipeline.report.collect import curves, evaluation_size, gather, model_rows, read_json, sweep_runs
from pipeline.report.figures import CURVES, channels_per_layer, iou_vs_latency, pareto, training_curves
from pipeline.report.int8 import INT8, chart_points, int8_section, metrics_entry, read_record, shipped_file
from pipeline.report.predictions import MAX_MODELS, gather_shown, prediction_figure
from pipeline.report.render import model_table, prune_notes, stage_times, time_table, to_html
from pipeline.report.timing import (
    DENSE,
    ORT_NOTE,
    describe_environment,
    measure_models,
    speed_notes,
    timing_environment,
)
from pipeline.report.verdict import card_section, iou_change, training_data, verdict
from pipeline.report.views import cost_points, curve_rows, summary
from pipeline.scoring import split_counts
from pipeline.selection import FAIL_SHARE, SCORE

STAGES = ("baseline", "augment", "loss", "prune", "finetune")
SWEPT = ("prune", "finetune")  # stages with one log folder per sweep run


@dataclass(frozen=True)
class ReportPaths:
    """What the report reads (records, models, data, curves) and writes."""

    reports: Path  # stage records
    checkpoints: Path  # model folders
    data: Path  # prepared data set
    logs: Path  # training curves (DVCLive)
    out: Path  # Markdown report
    html: Path  # self-contained HTML report
    metrics: Path  # every model's figures (JSON)
    points: Path  # accuracy vs cost plot data (JSON)
    plots: Path  # figures folder
    summary: Path  # the few figures `dvc metrics show` lists (JSON)
    curves: Path  # val score per epoch per model, for `dvc plots show` (JSON)
    pick: Path  # the pick stage's choice of the model to ship (JSON)


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


def shipped_run(picked: dict[str, Any]) -> str | None:
    """The fine-tuned run the pick stage chose to ship; None when it chose the dense model."""
    return None if picked["choice"] == PICKED_DENSE else picked["choice"]


def shipped_change(folders: dict[str, Path], ship: str | None, data: Path) -> tuple[dict[str, float] | None, int]:
    """(iou_change of the shipped model against dense on the test split, or None when dense is
    shipped; the number of test images), each model at its own tuned threshold."""
    counts = {}
    for key in (DENSE, ship) if ship else (DENSE,):
        model, card = load_model(folders[key])
        counts[key] = split_counts(model, data, card.threshold)
    images = len(counts[DENSE]["names"])
    return (iou_change(counts[DENSE], counts[ship]) if ship else None), images


def figure_sections(rows: dict, records: dict, folders: dict[str, Path], paths: ReportPaths,
                    panel_images: int, ship: str | None, int8: dict[str, tuple[float, float]]) -> list[str]:
    """Draw the figures into paths.plots; return their Markdown sections. `int8`: the INT8
    models' (ms, test IoU) for the latency chart, drawn beside the MAC one."""
    figures = paths.plots
    pareto(rows, figures / "iou_vs_gmacs.png")
    iou_vs_latency(rows, int8, figures / "iou_vs_latency.png")
    sections = ["## Accuracy vs cost", "![IoU vs GMACs](figures/iou_vs_gmacs.png) "
                "![IoU vs measured latency, FP32 and INT8](figures/iou_vs_latency.png)"]
    if records["prune"]:
        channels_per_layer(records["prune"], figures / "channels_per_layer.png")
        sections += ["## Pruning", "\n".join(prune_notes(records["prune"])),
                     "![channels per layer](figures/channels_per_layer.png)"]
    with_templates = {n: {**r["templates"], "saliency_gap": r["saliency_gap"]} for n, r in records["prune"].items()
                      if "templates" in r}
    if with_templates:
        template_histograms(with_templates, figures / "template_magnitudes.png")
        sections.append("![template magnitudes](figures/template_magnitudes.png)")
    runs = list(records["finetune"])  # the sweep's: logs of runs that left it stay on disk
    training_curves({stage: {m: curves(paths.logs / stage, m, runs if stage in SWEPT else None)
                             for m in CURVES} for stage in STAGES},
                    figures / "training_curves.png")
    sections += ["## Training curves", "![training curves](figures/training_curves.png)"]
    why = "the model to ship" if ship else "the dense model, the one to ship"
    return [*sections, *prediction_section(rows, runs, (ship, why), folders, paths, panel_images)]


def prediction_columns(rows: dict, runs: list[str], ranker: str | None) -> tuple[dict[str, str], list[str]]:
    """({panel label: model folder key}, labels left out) of the prediction figure: dense, then
    `ranker`, then the other fine-tuned runs (failed ones last), MAX_MODELS at most."""
    def failed(run: str) -> bool:
        return bool(rows[f"{run} fine-tuned"].get("failed"))

    order = sorted(runs, key=lambda run: (run != ranker, failed(run), run))
    labels = {DENSE: DENSE, **{run + (" (failed)" if failed(run) else ""): run for run in order}}
    shown = dict(list(labels.items())[:MAX_MODELS])
    return shown, [label for label in labels if label not in shown]


def prediction_section(rows: dict, runs: list[str], ranking: tuple[str | None, str], folders: dict[str, Path],
                       paths: ReportPaths, count: int) -> list[str]:
    """Draw the test predictions of dense and every fine-tuned model (MAX_MODELS at most), the
    `count` images picked by the per-image IoU of ranking = (run, why it ranks; run None: dense)."""
    final, why = ranking
    columns, hidden = prediction_columns(rows, runs, final)
    ranker = next(label for label, key in columns.items() if key == (final or DENSE))
    models = {label: load_model(folders[key]) for label, key in columns.items()}
    shown = gather_shown(paths.data, {label: (m, card.threshold) for label, (m, card) in models.items()},
                         ranker, count)
    if not shown:
        return ["## Test predictions", "No test image has a line pixel or a predicted one: nothing to rank."]
    prediction_figure(shown, ranker, hidden, paths.plots / "predictions.png")
    picked = ", ".join(f"{image.label.split(' (')[0]} `{image.name}` ({image.ious[ranker]:.3f})" for image in shown)
    return ["## Test predictions",
            f"Test images at spread ranks of the per-image IoU of `{ranker}` ({why}): {picked}. Every model at "
            f"its own tuned threshold; sky blue = line found, vermillion = false alarm, yellow = line missed "
            f"(colour-blind safe), marks widened for display; crops at full resolution."
            + (f" Not shown (at most {MAX_MODELS} models): {', '.join(hidden)}." if hidden else ""),
            '<div style="overflow-x:auto"><img src="figures/predictions.png" alt="test predictions" '
            'style="max-width:none"></div>']


def export_section(path: Path) -> list[str]:
    """What the export stage recorded, if it ran."""
    if not path.exists():
        return []
    r = read_json(path)
    return ["## Export", f"`{r['onnx']}` (from `{r['model']}`), ONNX opset {r['opset']}, {r['bytes'] / 1e6:.1f} MB; "
            f"max |ONNX Runtime - PyTorch| logit difference {r['max_abs_diff']:.2e} on {r['check_images']} test "
            f"images. Metadata: normalisation, classes, threshold {r['threshold']:.2f}, opset."]


def write_report(paths: ReportPaths, cfg: ReportCfg, sweep: SweepCfg) -> str:
    """Read the records of the sweep's runs, the pick stage's choice and the models; measure;
    write the report files and figures. Returns the model table."""
    records = gather(paths.reports, sweep_runs(sweep))
    picked = read_json(paths.pick)
    ship = shipped_run(picked)
    rows = model_rows(records)
    size = evaluation_size(paths.data)
    folders = {DENSE: paths.checkpoints / "dense",
               **{run: paths.checkpoints / "final" / run for run in records["finetune"]}}
    with tempfile.TemporaryDirectory(prefix="report-networks-") as tmp:
        num_classes = load_card(folders[DENSE]).num_classes
        int8 = read_record(paths.reports / "int8.json")
        int8_file = shipped_file(int8)
        speed = measure_models({**folders, **other_networks(rows, Path(tmp), num_classes)}, size, cfg,
                               {INT8: int8_file} if int8_file else None, {INT8: ship or DENSE})
    attach_speed(rows, speed)
    timing = f"batch 1 at {size[0]}x{size[1]}, {describe_environment(timing_environment(cfg.threads))}"
    change, images = shipped_change(folders, ship, paths.data)
    opening = verdict(picked, rows, change, images, timing,
                      training_data(paths.data, paths.reports / "baseline.json"))
    sections = figure_sections(rows, records, folders, paths, cfg.panel_images, ship,
                               chart_points(int8, speed, ship or DENSE))
    sections += export_section(paths.reports / "export.json")
    ship_folder = paths.checkpoints / "ship"
    sections += card_section(load_card(ship_folder) if (ship_folder / "model.json").exists() else None)
    sections += int8_section(int8, speed, ship or DENSE, ship or DENSE, timing)
    sections += ["## Stage wall time", "Each stage's own run (from its record), the report's latency "
                 "measurements not included.\n\n" + time_table(stage_times(paths.reports, records))]
    text = "\n\n".join([
        "# Power-line segmentation: the model to ship", "\n".join(opening),
        "## Every model", model_table(rows), explain(size, cfg, timing),
        "## Speed", f"Timed on {timing}. {ORT_NOTE}",
        "\n".join(speed_notes(rows, speed)) or "no fine-tuned models",
        *sections])
    paths.out.parent.mkdir(parents=True, exist_ok=True)
    paths.out.write_text(text + "\n")
    paths.html.write_text(to_html(text, paths.out.parent, "power-line segmentation report"))
    write_json({**{name: {k: v for k, v in row.items() if isinstance(v, float | int)} for name, row in rows.items()},
                **metrics_entry(int8, speed, ship or DENSE)}, paths.metrics)
    write_json(cost_points(rows), paths.points)
    write_json(summary(rows, ship), paths.summary)
    write_json(curve_rows(rows, paths.logs, records["studies"]["loss"]["winner"], list(records["finetune"])),
               paths.curves)
    return model_table(rows)


def explain(size: tuple[int, int], cfg: ReportCfg, timing: str) -> str:
    """How the table's figures were measured."""
    return (f"IoU, mIoU, F1: power-line class, pixels summed over the test split, strict (no distance "
            f"tolerance), at the threshold tuned on val. Tol. F1: precision = share of predicted line pixels "
            f"within 0.0075 of the image diagonal of a true line pixel, recall = share of true line pixels "
            f"within that distance of a predicted one; not directly comparable with BSDS ODS (which thins "
            f"predictions and matches one to one). Val IoU tuned: val IoU at the threshold that maximises val "
            f"F1, the score every checkpoint, early stop and study choice is made by ({SCORE}). A pruning run "
            f"has **failed** when its final {SCORE} is below {FAIL_SHARE:.0%} of the dense model's: both its "
            f"rows are marked and it is never a leader (Pareto front, speed list). GMACs and Mparams at "
            f"{size[0]}x{size[1]}, the size latency is timed at (Torch-Pruning's counter). Latency: {timing}, "
            f"{cfg.warmup} warm-up runs, {cfg.rounds} rounds with the models interleaved; 'x dense' = median "
            f"over rounds of the paired ratio dense time / model time. Pruned rows share their fine-tuned "
            f"model's network, study rows the dense one's. ONNX MB: size of the model's ONNX file (what "
            f"ships); peak MB ORT: peak resident memory of a fresh process that loads the ONNX file and runs "
            f"one image in ONNX Runtime (runtime included). Baseline candidates of another size than the "
            f"dense model are timed as untrained networks of their architecture.")
