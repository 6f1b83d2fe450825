"""The report's prediction figure: which test images, which models, and pixels drawn 1:1."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from pipeline.artifact import save_model
from pipeline.config import ModelCfg
from pipeline.models import create_model
from pipeline.report.build import ReportPaths, prediction_columns, prediction_section
from pipeline.report.predictions import (
    MAX_MODELS,
    MAX_WIDTH,
    Shown,
    densest_window,
    gather_shown,
    per_image_iou,
    prediction_figure,
    spread_by_rank,
)
from pipeline.report.sheet import Sheet

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


def test_best_median_and_worst_are_picked_by_per_image_iou_not_by_order():
    ious = {"e": 0.7, "b": 0.1, "f": math.nan, "a": 0.9, "d": 0.3, "c": 0.5}  # f: nothing to score
    assert spread_by_rank(ious) == [("best (1 of 5)", "a"), ("median (3 of 5)", "c"), ("worst (5 of 5)", "b")]


def test_spread_by_rank_with_few_images_or_more_picks():
    assert [name for _, name in spread_by_rank({"x": 0.2, "y": 0.8})] == ["y", "x"]
    assert spread_by_rank({"x": 0.2}) == [("best (1 of 1)", "x")]
    assert spread_by_rank({"x": math.nan}) == []
    ious = {str(i): i / 10 for i in range(9)}
    assert [name for _, name in spread_by_rank(ious, 5)] == ["8", "6", "4", "2", "0"]


def test_the_crop_window_holds_the_most_line_pixels_and_centres_a_line_it_cannot_hold_whole():
    points = np.zeros((100, 200), bool)
    points[60:64, 150:170] = True  # a dense patch ...
    points[10, 0:30] = True  # ... and a thin line with fewer pixels
    y0, x0 = densest_window(points, 20, 40)
    assert points[y0 : y0 + 20, x0 : x0 + 40].sum() == 80
    line = np.zeros((100, 200), bool)
    line[:, 120] = True  # a wire across the whole image: every window over it is as dense
    y0, x0 = densest_window(line, 30, 50)
    assert x0 + 25 == 120 and abs(y0 + 15 - 49.5) <= 0.5  # the one centred on the wire
    assert densest_window(np.zeros((100, 200), bool), 30, 50) == (35, 75)  # nothing: the centre


def final_rows(runs: dict[str, bool]) -> dict:
    return {f"{run} fine-tuned": {"kind": "final", "run": run, "failed": failed} for run, failed in runs.items()}


def test_the_figure_shows_dense_then_the_ranking_model_and_names_the_models_left_out():
    failed = {"a-0.5": True, "b-0.5": False, "c-0.5": False, "d-0.5": False, "e-0.5": False, "f-0.5": False}
    shown, hidden = prediction_columns(final_rows(failed), list(failed), "d-0.5")
    assert list(shown) == ["dense", "d-0.5", "b-0.5", "c-0.5", "e-0.5", "f-0.5"]  # failed runs last
    assert len(shown) == MAX_MODELS and hidden == ["a-0.5 (failed)"]
    shown, hidden = prediction_columns(final_rows({"a-0.5": True}), ["a-0.5"], "a-0.5")
    assert shown == {"dense": "dense", "a-0.5 (failed)": "a-0.5"} and hidden == []


class Contrast(nn.Module):
    """Logits for 'line' from local contrast: a crude line detector with no weights to train."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(1, keepdim=True)
        score = (grey - nn.functional.avg_pool2d(grey, 7, 1, 3, count_include_pad=False)).abs() * self.gain - 2
        return torch.cat([-score, score], 1)


def test_the_figure_shows_the_best_median_and_worst_of_the_ranking_model_with_every_models_iou(tiny_data, tmp_path):
    models = {"dense": (Contrast(4), 0.5), "pruned": (Contrast(3), 0.5), "weak": (Contrast(2), 0.5)}
    scored = sorted(iou for iou in per_image_iou(Contrast(3), tiny_data, 0.5).values() if not math.isnan(iou))
    assert len(set(scored)) >= 3  # distinct IoUs, or the check below could pass by chance
    shown = gather_shown(tiny_data, models, "pruned", 3)
    assert [image.ious["pruned"] for image in shown] == [scored[-1], scored[(len(scored) - 1) // 2], scored[0]]
    assert [image.ious["dense"] for image in shown] == [
        per_image_iou(Contrast(4), tiny_data, 0.5)[i.name] for i in shown
    ]
    prediction_figure(shown, "pruned", [], tmp_path / "predictions.png")
    height, width = cv2.imread(str(tmp_path / "predictions.png")).shape[:2]
    assert width <= MAX_WIDTH and height > 3 * 64


def test_images_on_a_sheet_are_drawn_one_to_one(tmp_path):
    picture = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    sheet = Sheet(301)
    sheet.image(17, 23, picture)
    sheet.text(5, 2, "a title")
    sheet.save(tmp_path / "sheet.png", 211)
    drawn = cv2.imread(str(tmp_path / "sheet.png"))[:, :, ::-1]
    assert drawn.shape == (211, 301, 3) and np.array_equal(drawn[23:60, 17:70], picture)


def test_a_large_image_gets_a_full_resolution_crop(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (700, 1200, 3), dtype=np.uint8)
    true = np.zeros((700, 1200), bool)
    true[500:503, 900:1100] = True
    shown = [Shown("best (1 of 1)", "big", rgb, true, np.ones_like(true), {"m": true.copy()}, {"m": 1.0})]
    prediction_figure(shown, "m", [], tmp_path / "p.png")
    drawn = cv2.imread(str(tmp_path / "p.png"))[:, :, ::-1]
    assert drawn.shape[1] <= MAX_WIDTH
    patch = rgb[490:520, 950:990]  # photo pixels beside the wire, inside any crop centred on it
    found = cv2.matchTemplate(drawn, patch, cv2.TM_SQDIFF)
    assert found.min() == 0  # the photo appears somewhere at 100 %, pixel for pixel


def test_the_report_section_ranks_by_the_exported_model_and_draws_every_fine_tuned_one(tiny_data, params, tmp_path):
    cfg = ModelCfg.model_validate(params["model"])
    folders = {}
    for seed, key in enumerate(("dense", "a-0.5", "b-0.5")):
        torch.manual_seed(seed)
        folders[key] = tmp_path / key
        save_model(create_model(cfg), folders[key], {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5})
    paths = ReportPaths(**{field.name: tmp_path / field.name for field in dataclasses.fields(ReportPaths)})
    paths = dataclasses.replace(paths, data=tiny_data)
    rows = final_rows({"a-0.5": True, "b-0.5": False})
    text = "\n".join(prediction_section(rows, ["a-0.5", "b-0.5"], ("b-0.5", "the model to ship"), folders, paths, 3))
    assert "per-image IoU of `b-0.5` (the model to ship)" in text and 'src="figures/predictions.png"' in text
    assert cv2.imread(str(paths.plots / "predictions.png")).shape[1] <= MAX_WIDTH
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-0.5", "b-0.5", "dense", "plots"]  # nothing else written
