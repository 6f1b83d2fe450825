"""The report's prediction figure: test images at spread ranks of one model's per-image IoU
(for 3: the best, the median and the worst), every model side by side with its own IoU on
that image, whole and as a full-resolution crop around the wires.

Panels are placed in pixels and drawn 1:1 (no resampling by matplotlib), so a crop shows
every pixel of the photo once; the figure is at most MAX_WIDTH px wide whatever the number
of models (columns narrow down to fit, MAX_MODELS at most: the caller leaves out the rest).
The marks are pipeline.overlay's, as in `predict --overlay`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.data.datamodule import PreparedSplit, eval_transform, pad_collate
from pipeline.labels import IGNORE_INDEX, LINE
from pipeline.metrics import line_probability
from pipeline.overlay import LEGEND, display_widening, overlay
from pipeline.report.sheet import Sheet
from pipeline.scoring import image_counts, split_probabilities

MAX_WIDTH = 1800  # px: fits a 1920 px screen, where the HTML report shows it unscaled
MAX_MODELS = 6  # model columns; the photo takes one more
MAX_PANEL = 360  # px: the side of a panel when few models leave room
MAX_ENLARGE = 4  # small images are shown enlarged up to this whole factor (pixels repeated)
MARGIN, GAP, TITLE, LABEL, HEADER = 10, 8, 30, 24, 78  # px
FRAME = (255, 255, 255)  # where the crop is, on the whole photo


@dataclass(frozen=True)
class Shown:
    """One test image of the figure: its rank label, photo, labels and every model's prediction."""

    label: str  # e.g. "best (1 of 24)"
    name: str
    rgb: np.ndarray  # HxWx3 uint8
    true: np.ndarray  # bool HxW: line pixels
    valid: np.ndarray  # bool HxW: not ignored
    preds: dict[str, np.ndarray]  # model label -> bool HxW at its tuned threshold
    ious: dict[str, float]  # model label -> IoU on this image


def image_iou(prob: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Strict line IoU of one image (ignored pixels count for neither side); NaN when the
    image has no line pixel and none is predicted (nothing to score)."""
    c = image_counts(prob, mask, threshold)
    union = c["tp"] + c["fp"] + c["fn"]
    return c["tp"] / union if union else math.nan


def per_image_iou(model: nn.Module, data: Path, threshold: float) -> dict[str, float]:
    """{test image name: IoU} of `model` at `threshold` over the whole test split."""
    return {name: image_iou(prob, mask, threshold) for name, prob, mask in split_probabilities(model, data)}


def spread_by_rank(ious: dict[str, float], count: int = 3) -> list[tuple[str, str]]:
    """(label, name) of `count` images at evenly spaced ranks of IoU, best first (ties by
    name): for 3, the best, the median and the worst. NaN IoUs (nothing to score) are left out."""
    ranked = sorted((n for n, iou in ious.items() if not math.isnan(iou)), key=lambda n: (-ious[n], n))
    last, count = len(ranked) - 1, min(count, len(ranked))
    if count < 1:
        return []
    positions = sorted({round(i * last / max(count - 1, 1)) for i in range(count)})
    words = {last // 2: "median", (last + 1) // 2: "median", last: "worst", 0: "best"}
    return [(f"{words.get(p, 'rank')} ({p + 1} of {len(ranked)})", ranked[p]) for p in positions]


def densest_window(points: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """(y0, x0) of the height x width window holding the most True pixels of `points`; of
    equal windows the one nearest the points' centroid; the centre if there are none."""
    rows, cols = points.shape
    height, width = min(height, rows), min(width, cols)
    table = np.pad(points.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
    sums = table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width]
    if sums.max() == 0:
        return (rows - height) // 2, (cols - width) // 2
    best = np.argwhere(sums == sums.max())
    aim = np.argwhere(points).mean(axis=0) - (height / 2, width / 2)
    y0, x0 = best[np.argmin(((best - aim) ** 2).sum(axis=1))]
    return int(y0), int(x0)


@torch.inference_mode()
def _scored(
    model: nn.Module, threshold: float, split: PreparedSplit, names: list[str]
) -> dict[str, tuple[np.ndarray, float]]:
    """{name: (bool HxW prediction at `threshold`, IoU)} of the named images, whole size."""
    model.eval()
    out = {}
    for name in names:
        item = split[split.names.index(name)]
        _, height, width = item["image"].shape
        prob = line_probability(model(pad_collate([item])["image"]))[0, :height, :width].numpy()
        out[name] = prob >= threshold, image_iou(prob, item["mask"].numpy(), threshold)
    return out


def gather_shown(data: Path, models: dict[str, tuple[nn.Module, float]], ranker: str, count: int) -> list[Shown]:
    """The `count` test images at spread ranks of `ranker`'s per-image IoU (spread_by_rank),
    with every model's prediction and IoU on them."""
    model, threshold = models[ranker]
    picks = spread_by_rank(per_image_iou(model, data, threshold), count)
    split = PreparedSplit(data, "test", eval_transform())
    scored = {
        label: _scored(model, threshold, split, [name for _, name in picks])
        for label, (model, threshold) in models.items()
    }
    shown = []
    for label, name in picks:
        mask = split.read_mask(name)
        shown.append(
            Shown(
                label,
                name,
                split.read(name),
                mask == LINE,
                mask != IGNORE_INDEX,
                {m: scored[m][name][0] for m in models},
                {m: scored[m][name][1] for m in models},
            )
        )
    return shown


def prediction_figure(shown: list[Shown], ranker: str, hidden: list[str], path: Path) -> None:
    """Draw `shown` (gather_shown) into a PNG at most MAX_WIDTH px wide: per image a row of
    whole views (the photo, then every model's marks) and, when the whole view is reduced, a
    row of full-resolution crops around its wires. `hidden`: models left out, named in it."""
    columns = 1 + len(shown[0].preds)
    side = min(MAX_PANEL, (MAX_WIDTH - 2 * MARGIN - (columns - 1) * GAP) // columns)
    sheet = Sheet(2 * MARGIN + columns * side + (columns - 1) * GAP)
    sheet.text(
        MARGIN,
        MARGIN,
        f"Test images ranked by the per-image IoU of {ranker}; every model at its own "
        "tuned threshold, its IoU on the image in its panel's title",
        fontsize=12,
        weight="bold",
    )
    sheet.legend(MARGIN, MARGIN + 24, LEGEND)
    note = (
        "Under the marks: the photo in dimmed grey. Marks are drawn wider than the pixels they mark, for "
        "display only (each row says by how much); crops are at full resolution (100 %)."
    )
    if hidden:
        note += f" Not shown (at most {MAX_MODELS} models): {', '.join(hidden)}."
    sheet.text(MARGIN, MARGIN + 48, note, fontsize=9)
    y = HEADER
    for image in shown:
        y = _image_rows(sheet, image, side, y) + 2 * GAP
    sheet.save(path, y - GAP)


def _display_scale(height: int, width: int, side: int) -> float:
    """The scale that fits an image in a side x side panel: a reduction, or a whole
    enlargement (at most MAX_ENLARGE) for a small image."""
    fit = min(side / height, side / width)
    return fit if fit < 1 else float(min(int(fit), MAX_ENLARGE))


def _resized(picture: np.ndarray, scale: float) -> np.ndarray:
    """`picture` reduced by area averaging, or enlarged by repeating pixels."""
    if scale >= 1:
        return np.repeat(np.repeat(picture, int(scale), axis=0), int(scale), axis=1)
    rows, cols = picture.shape[:2]
    return cv2.resize(picture, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)


def _panel_row(sheet: Sheet, panels: list[tuple[str, np.ndarray]], side: int, y: int) -> int:
    """Place (title, picture) panels side by side from the left at `y`; returns the row's bottom."""
    bottom = y
    for column, (title, picture) in enumerate(panels):
        x = MARGIN + column * (side + GAP)
        sheet.text(x, y, title, fontsize=8)
        bottom = max(bottom, sheet.image(x, y + TITLE, picture))
    return bottom


def _widening(px: int) -> str:
    return f"marks widened {px} px each side" if px else "marks not widened"


def _iou_title(model: str, iou: float) -> str:
    return f"{model}\nIoU {iou:.3f}" if not math.isnan(iou) else f"{model}\nIoU - (no line, none predicted)"


def _image_rows(sheet: Sheet, image: Shown, side: int, y: int) -> int:
    """One image: its label, the whole views and, if they are reduced, the crops; returns the bottom."""
    height, width = image.true.shape
    scale = _display_scale(height, width, side)
    widen = display_widening(scale)
    marks = {m: overlay(image.rgb, pred, image.true, image.valid, widen) for m, pred in image.preds.items()}
    sheet.text(
        MARGIN,
        y,
        f"{image.label}: {image.name}, {width}x{height} px, shown at {scale:.0%}, {_widening(widen)}",
        fontsize=10,
        weight="bold",
    )
    photo = _resized(image.rgb, scale)
    crop = None
    if scale < 1:  # the whole view hides thin wires: add a crop at 100 % where they are densest
        rows, cols = min(side, height), min(side, width)
        points = image.true if image.true.any() else np.logical_or.reduce(list(image.preds.values()))
        y0, x0 = densest_window(points, rows, cols)
        crop = np.s_[y0 : y0 + rows, x0 : x0 + cols]
        photo = cv2.rectangle(
            np.ascontiguousarray(photo),
            (round(x0 * scale), round(y0 * scale)),
            (round((x0 + cols) * scale) - 1, round((y0 + rows) * scale) - 1),
            FRAME,
            1,
        )
    panels = [("photo", photo)] + [(_iou_title(m, image.ious[m]), _resized(marks[m], scale)) for m in marks]
    y = _panel_row(sheet, panels, side, y + LABEL)
    if crop is None:
        return y
    sheet.text(
        MARGIN,
        y + GAP,
        f"crop at 100 % around the wires (x {x0}-{x0 + cols}, y {y0}-{y0 + rows}; white "
        f"frame on the photo above), {_widening(display_widening(1))}",
        fontsize=9,
    )
    crops = {
        m: overlay(image.rgb, p, image.true, image.valid, display_widening(1))[crop] for m, p in image.preds.items()
    }
    panels = [("photo", image.rgb[crop])] + [(m, picture) for m, picture in crops.items()]
    return _panel_row(sheet, panels, side, y + GAP + LABEL)
