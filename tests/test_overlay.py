"""The shared line overlay: colour-blind-safe marks over a grey photo, thin lines kept visible."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.overlay import DIM, FALSE_ALARM, HIT, MISS, PREDICTED, display_widening, overlay


def photo(height: int = 40, width: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_planted_hit_false_alarm_and_miss_get_their_colours_and_the_rest_stays_grey():
    rgb = photo()
    true, pred, valid = (np.zeros((40, 40), bool) for _ in range(3))
    valid[:] = True
    true[5, 5] = pred[5, 5] = True  # hit
    pred[5, 30] = True  # false alarm
    true[30, 5] = True  # miss
    pred[30, 30] = True
    valid[30, 30] = False  # a prediction on an ignored pixel: not marked
    shown = overlay(rgb, pred, true, valid, widen=1)
    assert tuple(shown[5, 5]) == HIT and tuple(shown[5, 30]) == FALSE_ALARM and tuple(shown[30, 5]) == MISS
    assert tuple(shown[4, 6]) == HIT  # the 1 px halo takes its mark's colour
    grey = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * DIM).astype(np.uint8)
    for y, x in ((30, 30), (20, 20), (5, 7)):  # the ignored prediction, nowhere, beyond the halo
        assert (shown[y, x] == grey[y, x]).all()


def test_a_mark_keeps_its_colour_when_a_neighbour_of_another_kind_is_widened_over_it():
    true = np.zeros((20, 20), bool)
    pred = np.zeros((20, 20), bool)
    true[10, 5:15] = True  # a line, missed ...
    pred[10, 9] = True  # ... but for one pixel
    shown = overlay(photo(20, 20), pred, true, widen=2)
    assert tuple(shown[10, 9]) == HIT and tuple(shown[10, 8]) == MISS and tuple(shown[10, 10]) == MISS


def test_a_one_pixel_line_stays_visible_when_the_picture_is_shown_at_half_size():
    rgb = np.full((64, 64, 3), 200, np.uint8)
    pred = np.zeros((64, 64), bool)
    pred[:, 31] = True  # a 1 px wire, no ground truth
    scale = 0.5
    full = overlay(rgb, pred, widen=display_widening(scale))
    assert (full[:, 30:33] == PREDICTED).all()  # at full size: widened on both sides
    reduced = cv2.resize(full, (32, 32), interpolation=cv2.INTER_AREA)  # as the report reduces a whole view
    strongest = np.abs(reduced.astype(int) - PREDICTED).max(axis=2).min(axis=1)  # per row, the best column
    assert (strongest <= 2).all()  # some column stays the mark's own colour, not a blend with the grey


@pytest.mark.parametrize("scale", [0.1, 0.25, 0.4, 0.5, 0.67, 0.9, 1.0, 1.5, 2.0, 3.0])
def test_display_widening_makes_a_one_pixel_line_at_least_two_pixels_wide_on_screen(scale):
    widen = display_widening(scale)
    assert (2 * widen + 1) * scale >= 2
    assert widen == 0 or (2 * widen - 1) * scale < 2  # and no wider than needed
