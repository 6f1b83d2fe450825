"""The `wires` renderer: exact coverage masks, camera geometry, reproducibility, backgrounds."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.config import SyntheticCfg
from pipeline.data.sources.base import BACKGROUND, IGNORE_INDEX, LINE
from pipeline.data.sources.camera import Camera, random_camera
from pipeline.data.sources.synthetic import SyntheticSource
from pipeline.data.sources.trees import near_tree
from pipeline.data.sources.wires import coverage_mask, render_wires, stroke_coverage
from pipeline.errors import DataError
from tests.conftest import ROOT


def test_mask_rule_on_a_horizontal_wire_of_known_width():
    # a 2.5 px wire centred at y = 10.3 spans y in [9.05, 11.55]; pixel row i spans [i - 0.5, i + 0.5]
    h, w = 20, 30
    points, widths = np.array([[-10.0, 10.3], [w + 10.0, 10.3]]), np.array([2.5, 2.5])
    cover, _ = stroke_coverage(h, w, points, widths)
    expected = np.zeros(h)
    expected[[9, 10, 11, 12]] = [0.45, 1.0, 1.0, 0.05]  # overlaps of rows 9..12 with the wire
    np.testing.assert_allclose(cover, np.repeat(expected[:, None], w, 1), atol=1e-6)
    mask = coverage_mask(cover)
    rows = {value: sorted(set(np.nonzero(mask == value)[0].tolist())) for value in (LINE, IGNORE_INDEX)}
    assert rows == {LINE: [10, 11], IGNORE_INDEX: [9, 12]}
    assert (mask[[9, 10, 11, 12]] != BACKGROUND).all() and (mask[:9] == BACKGROUND).all()


def test_thin_wire_has_no_line_pixels_only_ignore():
    # 0.8 px centred on a pixel boundary: each of the two rows is covered 0.4, under half
    cover, _ = stroke_coverage(10, 10, np.array([[-5.0, 4.5], [15.0, 4.5]]), np.array([0.8, 0.8]))
    mask = coverage_mask(cover)
    assert not (mask == LINE).any()
    assert sorted(set(np.nonzero(mask == IGNORE_INDEX)[0].tolist())) == [4, 5]


def test_camera_nadir_centre_and_oblique_horizon():
    nadir = Camera(96, 128, np.radians(60), 0.0, 0.3)
    below = nadir.ground_to_image() @ np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(below[:2] / below[2], [(128 - 1) / 2, (96 - 1) / 2], atol=1e-9)
    xy, depth = nadir.project(np.array([[0.0, 0.0, 0.5]]))
    assert depth[0] == pytest.approx(0.5)  # half-way down to the ground
    oblique = Camera(96, 128, np.radians(60), np.radians(70), 1.0)
    rays = oblique.rays()
    assert (rays[0, :, 2] > rays[-1, :, 2]).all()  # the top of the image looks further, towards the sky
    assert (rays[0, :, 2] > 0).any() and (rays[-1, :, 2] < 0).all()  # the horizon is in view


def test_wire_width_grows_towards_the_camera():
    # a wire at height 0.5 under an oblique camera: the near (lower) end is wider in the mask
    cam = Camera(128, 128, np.radians(60), np.radians(50), 0.0)
    ground_y = np.linspace(-0.2, 3, 200)
    pts = np.stack([np.full_like(ground_y, 0.02), ground_y, np.full_like(ground_y, 0.5)], 1)
    xy, depth = cam.project(pts)
    keep = (depth > 0.05) & (xy[:, 1] > -5) & (xy[:, 1] < 133)
    cover, _ = stroke_coverage(128, 128, xy[keep], 0.02 * cam.f / depth[keep])
    widths = (coverage_mask(cover) == LINE).sum(1)
    assert widths[110] > widths[30] > 0


def test_side_on_views_show_wires_against_the_sky():
    # render_wires draws its camera first, so the same seed gives back the camera of each view
    in_sky = []
    for i in range(60):
        mask = render_wires(np.random.default_rng([1, i]), 64, 64)[1]
        looks_up = random_camera(np.random.default_rng([1, i]), 64, 64).rays()[..., 2] > 0
        in_sky.append(int((mask[looks_up] == LINE).sum()))
    assert sum(n > 20 for n in in_sky) >= 3  # wires above the horizon: UAVs flying beside the line


def test_near_tree_is_an_opaque_crown_of_leaves_or_twigs():
    for i in range(6):
        colour, alpha = near_tree(np.random.default_rng(i), 96, 128)
        assert colour.shape == (96, 128, 3) and alpha.shape == (96, 128)
        assert alpha.min() >= 0 and alpha.max() <= 1 and colour.min() >= 0 and colour.max() <= 1
    covered = [(near_tree(np.random.default_rng(i), 96, 128)[1] > 0.5).mean() for i in range(6)]
    assert max(covered) > 0.2  # crowns fill a good part of the view, not a speck


def test_each_leaf_is_opaque_exactly_where_it_is_coloured():
    """A leaf's opacity must follow its rotated shape: an unrotated cut-out would clip
    the leaves at a crown's edge to the wrong ellipse."""
    from pipeline.data.sources.trees import _leaves

    for i in range(3):
        colour, alpha = np.zeros((64, 64, 3), np.float32), np.zeros((64, 64), np.float32)
        _leaves(np.random.default_rng(i), colour, alpha, np.ones((64, 64), bool))
        coloured, opaque = colour.max(-1) > 0, alpha > 0
        assert coloured.any()
        assert (coloured != opaque).mean() == 0, f"seed {i}: {(coloured != opaque).mean():.3f} of pixels differ"


def wires_cfg(**update) -> SyntheticCfg:
    return SyntheticCfg(n_train=4, n_val=1, n_test=1, height=64, width=80, renderer="wires", **update)


def test_generator_is_byte_identical_across_runs_and_differs_by_seed():
    first, again = SyntheticSource(wires_cfg(), seed=3), SyntheticSource(wires_cfg(), seed=3)
    for key in ("train_0000", "train_0003", "val_0000"):
        a, b = first.load(key), again.load(key)
        assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    other = SyntheticSource(wires_cfg(), seed=4).load("train_0000")
    assert other.image.tobytes() != first.load("train_0000").image.tobytes()


def test_rendered_views_are_valid_and_hold_thin_wires():
    # widths are in pixels whatever the image size (photos are segmented at their own size): 192 is the default
    masks = [render_wires(np.random.default_rng([0, 0, i]), 192, 192)[1] for i in range(8)]
    assert all(set(np.unique(m).tolist()) <= {BACKGROUND, LINE, IGNORE_INDEX} for m in masks)
    fractions = np.array([(m == LINE).mean() for m in masks])
    assert (fractions > 0).mean() >= 0.6 and fractions.mean() < 0.1


def test_config_caps_training_set_and_backgrounds_need_wires():
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        SyntheticCfg(n_train=1001)
    with pytest.raises(ValidationError, match="renderer: wires"):
        SyntheticCfg(backgrounds="photos")


def test_background_folder_draws_on_the_photo(tmp_path):
    photo = np.zeros((150, 200, 3), np.uint8)
    photo[:] = (30, 140, 200)
    cv2.imwrite(str(tmp_path / "field.png"), photo[..., ::-1])
    sample = SyntheticSource(wires_cfg(backgrounds=str(tmp_path)), seed=0).load("train_0001")
    assert sample.image.shape == (64, 80, 3)
    far = cv2.dilate((sample.mask != BACKGROUND).astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    median = np.median(sample.image[far], axis=0)
    assert np.abs(median - [30, 140, 200]).max() <= 12  # the background is the photo, not a render


def test_bad_background_file_gives_one_line(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    source = SyntheticSource(wires_cfg(backgrounds=str(tmp_path)), seed=0)
    with pytest.raises(DataError) as err:
        source.load("train_0000")
    message = str(err.value)
    assert "broken.jpg" in message and "cannot decode image" in message and "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no background images"):
        SyntheticSource(wires_cfg(backgrounds=str(tmp_path / "empty")), seed=0)


def test_nadir_camera_projects_a_wire_to_its_known_row_and_width():
    # a nadir camera 1 above the ground sees a wire at height z, world y = y0, diameter d at
    # row cy - f*y0/(1-z), d*f/(1-z) px wide: chosen here as the 2.5 px wire at y = 10.3 above
    h, w, z = 20, 30, 0.6
    cam = Camera(h, w, np.radians(60), 0.0, 0.0)
    y0, diameter = -(10.3 - (h - 1) / 2) * (1 - z) / cam.f, 2.5 * (1 - z) / cam.f
    xs = np.linspace(-1, 1, 50)
    xy, depth = cam.project(np.stack([xs, np.full_like(xs, y0), np.full_like(xs, z)], 1))
    cover, _ = stroke_coverage(h, w, xy, diameter * cam.f / depth)
    mask = coverage_mask(cover)
    assert (mask[[10, 11]] == LINE).all() and (mask[[9, 12]] == IGNORE_INDEX).all()
    assert (mask[:9] == BACKGROUND).all() and (mask[13:] == BACKGROUND).all()


def test_generator_is_byte_identical_across_processes(tmp_path):
    """Two separate runs (different hash seeds: no set or dict order may leak in) of
    `prepare` on the wires renderer with a background folder write the same bytes."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for name in ("d.png", "b.png", "a.png", "c.png"):  # written out of order
        cv2.imwrite(str(tmp_path / "photos" / name), rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    code = ("import sys; from pathlib import Path; from pipeline.config import BaseCfg, PrepareCfg, SyntheticCfg;"
            "from pipeline.data.prepare import prepare;"
            "s = SyntheticCfg(n_train=3, n_val=1, n_test=1, height=48, width=64, renderer='wires',"
            " backgrounds=sys.argv[2]); prepare(PrepareCfg(synthetic=s), BaseCfg(seed=5), Path(sys.argv[1]))")
    outs = []
    for run, hash_seed in enumerate(("1", "2")):
        out = tmp_path / f"run{run}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "photos")], check=True, env=env,
                       capture_output=True, cwd=ROOT)
        outs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert len(outs[0]) == 11 and outs[0] == outs[1]  # 5 images, 5 masks, the manifest
