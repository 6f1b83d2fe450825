"""The synthetic source: deterministic, valid, realistic line density, not solvable by colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline.config import SyntheticCfg
from pipeline.data.sources.base import BACKGROUND, LINE, TOWER
from pipeline.data.sources.scenes import generate_scene
from pipeline.data.sources.synthetic import SyntheticSource
from pipeline.data.sources.wires import render_wires
from pipeline.errors import DataError, PipelineError

SIZE = 192


def scene(seed: int, split: int, index: int, h: int = SIZE, w: int = SIZE):
    return generate_scene(np.random.default_rng([seed, split, index]), h, w)


@pytest.fixture(scope="module")
def train_scenes():
    return [scene(0, 0, i) for i in range(30)]


@pytest.fixture(scope="module")
def held_out_scenes():  # a fixture: named so pytest never collects it as a test
    return [scene(0, 2, i) for i in range(10)]


def test_same_parameters_give_identical_bytes():
    cfg = SyntheticCfg(n_train=3, n_val=1, n_test=1, height=64, width=96)
    a, b = SyntheticSource(cfg, seed=7).load("train_0002"), SyntheticSource(cfg, 7).load("train_0002")
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    # an image does not depend on how many others there are
    more = SyntheticSource(cfg.model_copy(update={"n_train": 9}), 7).load("train_0002")
    assert more.image.tobytes() == a.image.tobytes()
    other_seed = SyntheticSource(cfg, seed=8).load("train_0002")
    assert other_seed.image.tobytes() != a.image.tobytes()
    other_split = SyntheticSource(cfg, seed=7).load("test_0000")
    assert other_split.image.tobytes() != SyntheticSource(cfg, 7).load("train_0000").image.tobytes()


def test_shapes_dtypes_and_labels():
    image, mask = scene(1, 0, 0, h=48, w=80)
    assert image.shape == (48, 80, 3) and image.dtype == np.uint8
    assert mask.shape == (48, 80) and mask.dtype == np.uint8
    for _, mask in (scene(1, 0, i) for i in range(5)):
        assert set(np.unique(mask).tolist()) <= {BACKGROUND, LINE, TOWER}


def test_source_protocol():
    cfg = SyntheticCfg(n_train=3, n_val=2, n_test=1, height=32, width=32)
    source = SyntheticSource(cfg, seed=0)
    keys = source.keys()
    assert keys == sorted(keys) and len(keys) == 6
    assert keys[:2] == ["test_0000", "train_0000"] and keys[-1] == "val_0001"
    split = source.fixed_split()
    assert split["train_0002"] == "train" and split["val_0001"] == "val" and len(split) == 6
    assert source.group("val_0000") == "val_0000"
    sample = source.load("val_0001")
    assert sample.name == "val_0001" and sample.meta == {"source": "synthetic", "index": 1}
    with pytest.raises(DataError, match="train_0003"):
        source.load("train_0003")
    with pytest.raises(PipelineError, match="seed"):
        SyntheticSource(cfg, seed=-1)


def test_line_fraction_is_like_real_data(train_scenes):
    fractions = np.array([(mask == LINE).mean() for _, mask in train_scenes])
    assert 0.005 < fractions.mean() < 0.03
    assert (fractions == 0).mean() <= 0.2  # only a few images without any line


def test_wires_are_thin_and_towers_appear(train_scenes):
    with_towers = sum((mask == TOWER).any() for _, mask in train_scenes)
    assert 3 <= with_towers < len(train_scenes)
    line = np.concatenate([(mask == LINE).astype(np.uint8) for _, mask in train_scenes])
    opened = cv2.morphologyEx(line, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    assert opened.sum() <= 0.01 * line.sum()  # wires are at most 4 px wide


def colour_features(image: np.ndarray) -> np.ndarray:
    """RGB plus all second-order terms: a quadratic colour classifier."""
    x = image.reshape(-1, 3).astype(np.float32) / 255
    r, g, b = x.T
    return np.column_stack([x, x**2, r * g, g * b, r * b])


def colour_iou(train, test) -> float:
    """Line IoU on `test` of a per-pixel colour classifier fitted on `train`."""
    features = np.concatenate([colour_features(img)[::3] for img, _ in train])
    labels = np.concatenate([(mask == LINE).ravel()[::3] for _, mask in train])
    clf = LogisticRegression(class_weight="balanced", solver="newton-cholesky").fit(features, labels)
    inter = union = 0
    for img, mask in test:
        pred, truth = clf.predict(colour_features(img)).reshape(mask.shape), mask == LINE
        inter, union = inter + (pred & truth).sum(), union + (pred | truth).sum()
    return inter / union


def recoloured(scenes, colour=(255, 0, 255)):
    out = []
    for img, mask in scenes:
        img = img.copy()
        img[mask == LINE] = colour
        out.append((img, mask))
    return out


def test_lines_cannot_be_found_by_colour(train_scenes, held_out_scenes):
    assert colour_iou(train_scenes[:20], held_out_scenes) < 0.1
    # control: the same classifier finds wires that have one distinct colour
    assert colour_iou(recoloured(train_scenes[:20]), recoloured(held_out_scenes)) > 0.5


def thin_response(image: np.ndarray) -> np.ndarray:
    """Contrast of bright or dark structures narrower than ~7 px (step edges give none)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    return np.maximum(cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel),
                      cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel))


def straight_thin_structures(scenes) -> tuple[float, int, int]:
    """Share of strong thin-structure pixels away from the labels, and long straight
    segments of them (Hough) away from / along the labels. "Strong" means at least the
    contrast of the weaker wires (25th percentile of the response on LINE pixels)."""
    responses = [thin_response(img) for img, _ in scenes]
    threshold = np.percentile(np.concatenate(
        [r[mask == LINE] for r, (_, mask) in zip(responses, scenes, strict=True)]), 25)
    strong_total = strong_away = on = off = 0
    for r, (_, mask) in zip(responses, scenes, strict=True):
        near = cv2.dilate((mask != BACKGROUND).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        strong = r >= threshold
        strong_total, strong_away = strong_total + strong.sum(), strong_away + (strong & ~near).sum()
        segments = cv2.HoughLinesP(strong.astype(np.uint8), 1, np.pi / 180, 40,
                                   minLineLength=40, maxLineGap=3)
        for x0, y0, x1, y1 in np.zeros((0, 4)) if segments is None else segments.reshape(-1, 4):
            t = np.linspace(0, 1, 20)
            xs, ys = np.round(x0 + t * (x1 - x0)).astype(int), np.round(y0 + t * (y1 - y0)).astype(int)
            away = near[ys, xs].mean() < 0.2
            on, off = on + (not away), off + away
    return strong_away / strong_total, on, off


def test_thin_straight_distractors_exist_off_the_wires(train_scenes):
    scenes = train_scenes[:12]
    share_away, on, off = straight_thin_structures(scenes)
    assert share_away > 0.3 and on > 0 and off > 0.3 * on
    # control: the same wires on flat ground leave nothing to confuse them with
    flat = []
    for _, mask in scenes:
        img = np.full(mask.shape + (3,), (110, 125, 60), np.uint8)
        img[mask == LINE] = (40, 40, 40)
        flat.append((img, mask))
    share_away, _, off = straight_thin_structures(flat)
    assert share_away < 0.05 and off == 0



@pytest.fixture(scope="module")
def wires_views():
    """Views of the opt-in `wires` renderer: 20 to fit on, 10 to test."""
    views = [render_wires(np.random.default_rng([0, split, i]), SIZE, SIZE) for split, n in ((0, 20), (2, 10))
             for i in range(n)]
    return views[:20], views[20:]


def test_wires_renderer_cannot_be_solved_by_colour(wires_views):
    train, test = wires_views
    # relative to calling every pixel a line: close wires are up to 12 px wide, so lines are ~6 % of pixels
    everything = sum((mask == LINE).sum() for _, mask in test) / sum(mask.size for _, mask in test)
    assert colour_iou(train, test) < 2 * everything
    assert colour_iou(recoloured(train), recoloured(test)) > 0.5

