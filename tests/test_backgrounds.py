"""Labelled backgrounds (issue 18 item 2): a photo's own line mask joins the rendered wires."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config import SyntheticCfg
from pipeline.data.sources.base import BACKGROUND, IGNORE_INDEX, LINE, TOWER
from pipeline.data.sources.synthetic import SyntheticSource
from pipeline.data.sources.wires import render_wires
from pipeline.errors import DataError

H, W = 64, 80


def test_photo_lines_join_the_mask_and_change_nothing_else():
    photo = np.full((H, W, 3), 120, np.uint8)
    lines = np.zeros((H, W), np.float32)
    lines[20:22], lines[22] = 1.0, 0.3  # two rows of a photo's wire, and a row it covers under half
    band = np.zeros(H, bool)
    band[20:23] = True
    whole = 0
    for i in range(8):
        ref_image, ref = render_wires(np.random.default_rng([1, i]), H, W, photo)
        image, mask = render_wires(np.random.default_rng([1, i]), H, W, photo, lines)
        assert image.tobytes() == ref_image.tobytes()  # the labels change, the picture does not
        assert (mask[~band] == ref[~band]).all() and ((ref == LINE) <= (mask == LINE)).all()
        # where no foliage hides it: rows 20-21 line, row 22 ignore (or a rendered wire's line)
        whole += bool((mask[20:22] == LINE).all() and np.isin(mask[22], [LINE, IGNORE_INDEX]).all())
    assert whole >= 5


def labelled_folder(root, mask: np.ndarray) -> str:
    (root / "images").mkdir()
    (root / "masks").mkdir()
    photo = np.random.default_rng(0).integers(60, 200, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "images" / "a.png"), photo)
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    return str(root)


def test_labelled_folder_keeps_the_photo_lines_towers_and_ignore(tmp_path):
    mask = np.zeros((H, W), np.uint8)  # rows across the whole width: the random flip keeps them
    mask[30:32], mask[5:10], mask[50:55] = LINE, TOWER, IGNORE_INDEX
    cfg = SyntheticCfg(n_train=4, n_val=1, n_test=1, height=H, width=W, renderer="wires",
                       backgrounds=labelled_folder(tmp_path, mask))
    whole = 0
    for key in ("train_0000", "train_0001", "train_0002", "train_0003"):
        got = SyntheticSource(cfg, seed=0).load(key).mask
        rendered = got != BACKGROUND
        assert (got[50:55] == IGNORE_INDEX)[~(got[50:55] == LINE)].all()  # ignore unless a wire crosses
        assert np.isin(got[5:10], [TOWER, LINE, IGNORE_INDEX]).all() and (got[5:10] == TOWER).any()
        assert not (got[32:50] == TOWER).any() and rendered[30:32].mean() > 0.5
        whole += bool((got[30:32] == LINE).all())
    assert whole >= 3  # unless foliage hides them, the photo's wires stay line


@pytest.mark.parametrize(("bad", "expected"), [("value", "mask values [7] outside the classes"),
                                              ("orphan", "image has no mask b.png"),
                                              ("0/255", "a.png: mask has 255 (ignore) but no 1 (line)")])
def test_bad_labelled_background_gives_one_line(bad, expected, tmp_path):
    mask = np.zeros((H, W), np.uint8)
    mask[3, 3] = 7 if bad == "value" else 0
    if bad == "0/255":  # a line mask drawn 0/255 instead of with class ids
        mask[30:32] = 255
    folder = labelled_folder(tmp_path, mask)
    if bad == "orphan":
        (tmp_path / "masks" / "a.png").unlink()
        (tmp_path / "images" / "a.png").rename(tmp_path / "images" / "b.png")
    cfg = SyntheticCfg(n_train=1, n_val=1, n_test=1, height=H, width=W, renderer="wires", backgrounds=folder)
    with pytest.raises(DataError) as err:
        SyntheticSource(cfg, seed=0).load("train_0000")
    assert expected in str(err.value) and "\n" not in str(err.value)
