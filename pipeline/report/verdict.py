"""The report's opening: which model to ship, by which rule, what it costs in test IoU (with a
paired bootstrap interval over test images), what it gains in measured speed and file size,
what data it saw, and why; failed runs named. The choice itself is the pick stage's
(reports/pick.json): the report only explains it, with test figures the rule never read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.card import ModelCard
from pipeline.intervals import line_iou, paired_bca
from pipeline.pick import DENSE, OBJECTIVES
from pipeline.selection import FAIL_SHARE, SCORE

LEVEL = 0.95  # confidence level of the test IoU change's interval
RESAMPLES = 2000


def iou_change(dense: dict[str, list[int]], ship: dict[str, list[int]], seed: int = 0) -> dict[str, float]:
    """{"dense", "ship": test IoU of each, "change": ship - dense, "low", "high": its interval}:
    IoU from tp/fp/fn summed over the test images, the interval a paired BCa bootstrap over
    images (pipeline.intervals, as the benchmark does); when it is undefined (one image, or
    resamples that do not vary) low = high = change."""
    found = paired_bca(ship, dense, n_resamples=RESAMPLES, seed=seed, level=LEVEL)
    low, high = found["ci95"]
    return {"dense": float(line_iou(dense)), "ship": float(line_iou(ship)), "change": found["mean"],
            "low": low, "high": high}


def training_data(data: Path, baseline: Path | None = None) -> str:
    """Where the models' training images came from: the prepared data's manifest, and the
    synthetic pretraining when the baseline stage ran one (`baseline`: reports/baseline.json),
    with a warning when the prepared data is synthetic (wires drawn by the generator, on its
    own scenes or on real background photos: either way no real labelled wire)."""
    manifest = json.loads((data / "manifest.json").read_text())
    splits = {name: split["images"] for name, split in manifest.get("splits", {}).items()}
    line = (f"`{manifest['source']}`, {splits.get('train', 0)} training images "
            f"({splits.get('val', 0)} val, {splits.get('test', 0)} test)")
    pretrain = json.loads(baseline.read_text()).get("pretrain") if baseline and baseline.exists() else None
    if pretrain and pretrain.get("enabled"):
        synthetic, epochs = pretrain.get("synthetic", {}), pretrain.get("epochs", "?")
        drawn_on = (f"the photos in `{synthetic['backgrounds']}`" if synthetic.get("backgrounds")
                    else "generated scenes")
        line += (f", after pretraining on {synthetic.get('n_train', '?')} synthetic images "
                 f"(`{synthetic.get('renderer', '?')}` wires drawn on {drawn_on}, {epochs} epochs)")
    if manifest["source"] == "synthetic":
        line += (". **Synthetic wires only: the model has never seen a real labelled wire; expect it to miss real "
                 "wires until it is trained on real labelled data (prepare.source)**")
    return line


def _test_iou(change: dict[str, float] | None, dense_iou: float, images: int) -> str:
    """The test IoU line's text: shipped against dense, the change and its interval."""
    if change is None:
        return f"{dense_iou:.3f}, the dense model itself (no change)"
    text = f"{change['ship']:.3f} against {change['dense']:.3f} for dense: {change['change']:+.3f}"
    if change["low"] == change["high"]:  # pipeline.intervals' degenerate case
        return f"{text} (no interval: the {images} test images do not vary enough to resample)"
    return (f"{text} ({LEVEL:.0%} paired bootstrap interval over the {images} test images: "
            f"{change['low']:+.3f} to {change['high']:+.3f})")


def verdict(picked: dict[str, Any], rows: dict[str, dict[str, Any]], change: dict[str, float] | None,
            images: int, timing: str, data: str) -> list[str]:
    """The verdict section's lines (Markdown). `picked` is reports/pick.json, `rows` the
    report's model rows with timing attached, `change` iou_change's result (None: dense is
    shipped), `timing` where and how latency was measured, `data` training_data's line."""
    dense = next(row for row in rows.values() if row["kind"] == "dense")
    choice = picked["choice"]
    ship = dense if choice == DENSE else rows[f"{choice} fine-tuned"]
    rule = picked["rule"]
    unit = OBJECTIVES[rule["objective"]]
    failed = [row["model"] for row in picked["candidates"] if row["failed"]]
    forced = f" **Forced by `pick.model: {rule['model']}`.**" if picked.get("forced") else ""
    lines = [
        "## Verdict",
        "",
        f"- **Recommended model: `{choice}`** (`checkpoints/ship`, exported as `export/model.onnx`).{forced}",
        f"- **Rule** (params.yaml `pick`): the fewest {unit} among the dense model and the fine-tuned runs whose "
        f"val IoU at the tuned threshold ({SCORE}) is at most {rule['max_iou_drop']:.3f} below the dense model's; "
        f"failed runs excluded; test figures are reported here, never used to choose.",
        f"- **Test IoU:** {_test_iou(change, dense['test/iou'], images)}.",
        f"- **Measured speed-up over dense:** {ship['eager_speedup']:.2f}x PyTorch eager "
        f"({ship['eager_ms']:.1f} ms), {ship['onnx_speedup']:.2f}x ONNX Runtime ({ship['onnx_ms']:.1f} ms); {timing}.",
        f"- **Cost:** {ship['gmacs']:.3g} GMACs per image at the timed size (dense {dense['gmacs']:.3g}: "
        f"{ship['gmacs'] / dense['gmacs'] - 1:+.0%}), {ship['mparams']:.3g} M parameters "
        f"(dense {dense['mparams']:.3g}).",
        f"- **File size:** {ship['onnx_mb']:.1f} MB as ONNX (dense {dense['onnx_mb']:.1f} MB).",
        f"- **Training data:** {data}.",
        f"- **Why:** {picked['reason']}.",
        "- **Failed runs** (val IoU below "
        f"{FAIL_SHARE:.0%} of dense, excluded): " + (", ".join(f"`{name}` **failed**" for name in failed) or "none"),
    ]
    return lines + ["", *candidate_table(picked)]


def candidate_table(picked: dict[str, Any]) -> list[str]:
    """The pick stage's table: every candidate's val figures and costs, the test IoU it did not use."""
    lines = ["| candidate | val IoU tuned | val drop | GMACs | Mparams | test IoU | verdict |", "|---" * 7 + "|"]
    for row in picked["candidates"]:
        test = f"{row['test/iou']:.3f}" if "test/iou" in row else "-"
        verdict_text = f"**{row['verdict']}**" if row["failed"] or row["model"] == picked["choice"] else row["verdict"]
        lines.append(f"| {row['model']} | {row[SCORE]:.3f} | {row['val_drop']:+.3f} | {row['gmacs']:.3f} | "
                     f"{row['mparams']:.2f} | {test} | {verdict_text} |")
    return lines


def card_section(card: ModelCard | None) -> list[str]:
    """The shipped model's card (checkpoints/ship/model.json, also in the ONNX metadata), as a list."""
    if card is None:
        return []
    data = card.training_data
    images = ", ".join(f"{n} {split}" for split, n in data.images.items()) if data else ""
    intervals = "; ".join(f"{name} {card.metrics.get(name, float('nan')):.3f} [{low:.3f}, {high:.3f}]"
                          for name, (low, high) in card.intervals.items())
    fields = [
        ("Model", f"{card.model.arch}-{card.model.encoder}" + (f", pruned by {card.method}" if card.method else "")),
        ("Training data", f"`{data.source}` ({images}), split file {data.split_file or 'none (seeded split)'}"
         if data else "not recorded"),
        ("Commit, date", f"{card.commit or 'unknown'}, {card.created or 'unknown'}"),
        ("Input", f"RGB, {card.input_size[0]}x{card.input_size[1]} evaluated (sides multiples of 32 run); "
                  f"normalised by mean {card.normalisation.mean}, std {card.normalisation.std}"
         if card.input_size else "not recorded"),
        ("Threshold", f"{card.threshold:.3f} (tuned on val)"),
        ("Test figures, 95 % BCa interval over images", intervals or "not computed"),
        ("Intended use", card.intended_use or "not stated"),
    ]
    items = [f"- **{name}:** {value}" for name, value in fields]
    items += ["- **Known limits:**", *[f"  - {limit}" for limit in card.limits]]
    return ["## Model card", "What `checkpoints/ship/model.json` and the ONNX file's metadata (`model_card`) say "
            "of the shipped model.", "\n".join(items)]  # one block: the report joins blocks with blank lines
