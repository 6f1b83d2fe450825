"""The export stage's INT8 model, shipped only when val accuracy allows it (`quantize` section).

Steps: quantise the exported FP32 ONNX file (pipeline.quantize: QDQ, per-channel weights,
MinMax calibration on training crops); score the line class's val IoU of both files in ONNX
Runtime at the model's tuned threshold (the one `predict` uses); accept when the INT8 model
loses at most `max_iou_drop`. Otherwise quantise again with the `keep_fp32` nodes left in
FP32 (auto: the first convolution, which sees raw pixels, and the head, which makes the
logits the threshold was tuned on) and score again. If that is still over the limit, no
INT8 file is written: the FP32 export stays the deliverable and the record says so (the
stage warns, the report shows it). Test IoU is recorded for both files, never used.

The comparison is against the FP32 ONNX file, not PyTorch, so only quantisation is measured.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.sections import QuantizeCfg

Scorer = Callable[[Path, Path, str], float]  # (onnx file, prepared data, split) -> line IoU


def onnx_counts(model: Path, data: Path, split: str) -> dict[str, list]:
    """Per-image counts of an ONNX file on a prepared split in ONNX Runtime, at the file's
    own tuned threshold (its metadata): {"names": [...], "tp": [...], ...}, as
    `scoring.split_counts` gives for a PyTorch model."""
    from pipeline.inference.predictor import Predictor
    from pipeline.scoring import COUNTS, image_counts, split_images

    predictor = Predictor(model)
    table: dict[str, list] = {"names": [], **{key: [] for key in COUNTS}}
    for name, batch, mask in split_images(data, split):
        height, width = mask.shape
        counts = image_counts(predictor.probabilities(batch.numpy())[0, :height, :width], mask, predictor.threshold)
        table["names"].append(name)
        for key, value in counts.items():
            table[key].append(value)
    return table


def onnx_iou(model: Path, data: Path, split: str) -> float:
    """Line IoU of an ONNX file on a prepared split in ONNX Runtime, pixels summed over the
    split, at the file's own tuned threshold, ignore pixels skipped."""
    from pipeline.scoring import scores

    return float(scores(onnx_counts(model, data, split))["iou"])


def fallback_nodes(fp32: Path, cfg: QuantizeCfg) -> list[str]:
    """The nodes the second attempt keeps in FP32 (none: no second attempt); names that are not
    in the graph are refused before anything is quantised (ONNX Runtime would ignore them)."""
    from pipeline.errors import PipelineError
    from pipeline.quantize import first_and_last_convs, unknown_nodes

    if cfg.keep_fp32 == "auto":
        return first_and_last_convs(fp32)
    if unknown := unknown_nodes(fp32, cfg.keep_fp32):
        raise PipelineError(f"quantize.keep_fp32: {unknown} are not nodes of {fp32} (first_and_last_convs names "
                            f"the auto ones)")
    return list(cfg.keep_fp32)


def quantize_checked(fp32: Path, out: Path, data: Path, cfg: QuantizeCfg, score: Scorer = onnx_iou
                     ) -> dict[str, Any]:
    """Write `out` (INT8) from `fp32` if an attempt passes the val check, else remove it.

    Returns the record: format, accepted, kept_fp32 (the shipped model's FP32 nodes), val and
    test IoU of FP32 and INT8 (the shipped attempt's, else the last one's), every attempt."""
    from pipeline.quantize import quantize_int8, training_crops

    out.unlink(missing_ok=True)  # a stale INT8 file must never outlive a failed check
    fallback = fallback_nodes(fp32, cfg)
    crops = training_crops(data, cfg.calibration_crops, cfg.calibration_size)
    fp32_val = score(fp32, data, "val")
    plans = [[]]
    if fallback:
        plans.append(fallback)
    attempts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        for number, keep in enumerate(plans):
            candidate = Path(tmp) / f"attempt{number}.onnx"
            done = quantize_int8(fp32, candidate, crops, activation_type=cfg.activations, keep_fp32=keep)
            val = score(candidate, data, "val")
            attempts.append({"kept_fp32": keep, "val_iou": val, "val_drop": fp32_val - val,
                             "accepted": fp32_val - val <= cfg.max_iou_drop})
            if attempts[-1]["accepted"]:
                break
        accepted = attempts[-1]["accepted"]
        test = {"fp32": score(fp32, data, "test"), "int8": score(candidate, data, "test")}
        if accepted:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(candidate), str(out))
    return {
        "enabled": True, "accepted": accepted, "int8": str(out) if accepted else None, "fp32": str(fp32),
        "format": {key: done[key] for key in ("format", "activations", "weights", "per_channel", "calibration")},
        "calibration_crops": cfg.calibration_crops, "calibration_size": cfg.calibration_size,
        "max_iou_drop": cfg.max_iou_drop, "kept_fp32": attempts[-1]["kept_fp32"] if accepted else None,
        "val_iou": {"fp32": fp32_val, "int8": attempts[-1]["val_iou"]},
        "test_iou": {"fp32": test["fp32"], "int8": test["int8"], "note": "reported only, never used to decide"},
        "attempts": attempts,
        "outcome": outcome(attempts, fp32_val, cfg.max_iou_drop),
    }


def outcome(attempts: list[dict[str, Any]], fp32_val: float, limit: float) -> str:
    """One line saying what was shipped and why."""
    last = attempts[-1]
    if last["accepted"] and not last["kept_fp32"]:
        return f"INT8 shipped: val IoU {last['val_iou']:.4f} vs FP32 {fp32_val:.4f} (may lose at most {limit:g})"
    if last["accepted"]:
        return (f"INT8 shipped with {len(last['kept_fp32'])} node(s) in FP32 ({', '.join(last['kept_fp32'])}): "
                f"all-INT8 lost {attempts[0]['val_drop']:.4f} val IoU (limit {limit:g}), this one "
                f"{last['val_drop']:.4f}")
    tried = "; ".join(f"{len(a['kept_fp32'])} FP32 node(s): -{a['val_drop']:.4f}" for a in attempts)
    return (f"no INT8 model shipped: every attempt lost more than {limit:g} val IoU against FP32 "
            f"{fp32_val:.4f} ({tried}); ship the FP32 export, or raise quantize.max_iou_drop / name more "
            f"nodes in quantize.keep_fp32")


def disabled_record() -> dict[str, Any]:
    """The record when `quantize.enabled` is false."""
    return {"enabled": False, "accepted": False, "int8": None, "outcome": "INT8 export disabled (quantize.enabled)"}
