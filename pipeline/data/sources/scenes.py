"""The `scenes` renderer (the default data set's): procedural aerial scenes with power lines.

Wires share their colour, opacity and width distribution with unlabelled distractors
(fences, tracks, road markings, roof ridges) and with the ground, so the task needs shape
and context rather than colour. Drawn on a supersampled canvas, so line coverage, and the
mask's 0.5 rule, is exact to a sixteenth of a pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.data.sources.base import BACKGROUND, LINE, TOWER

SS = 4  # supersampling: coverage is exact to 1/16 of a pixel, so the 0.5 threshold is too
FULL = SS * SS  # canvas value whose box average is the number of covered sub-pixels
Rng = np.random.Generator
FIELD = np.array([[.36, .45, .21], [.47, .52, .27], [.70, .65, .42], [.46, .36, .25],
                  [.60, .56, .45], [.24, .33, .16], [.55, .50, .30]], np.float32)
ROAD = np.array([[.36, .36, .37], [.60, .55, .45], [.66, .66, .64]], np.float32)
ROOF = np.array([[.60, .27, .21], [.42, .42, .44], [.20, .20, .22], [.76, .74, .71]], np.float32)
FOREST, WATER = np.array([.13, .21, .10], np.float32), np.array([.12, .17, .21], np.float32)


def _noise(rng: Rng, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise, zero mean and unit variance, with blobs about `cell` pixels wide."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (big - big.mean()) / (big.std() + 1e-6)


def _pts(points: np.ndarray) -> np.ndarray:
    """Image-pixel coordinates (x, y) -> integer canvas coordinates (pixel centres at +0.5)."""
    return np.round((np.asarray(points) + 0.5) * SS - 0.5).astype(np.int32).reshape(-1, 1, 2)


def _lines(h: int, w: int, polylines: list[np.ndarray], width: float) -> np.ndarray:
    """Coverage of open polylines `width` pixels wide (flat ends).

    Each line is filled as the polygon between its two offset edges: cv2's thick lines
    round widths to a few steps, which would make the labelled width wrong.
    """
    outlines = []
    for p in polylines:
        tangent = np.gradient(np.asarray(p, np.float64), axis=0)
        normal = tangent[:, ::-1] * [-1, 1] / np.linalg.norm(tangent, axis=1, keepdims=True)
        half = normal * (width - 1 / SS) / 2  # fillPoly also fills the boundary sub-pixels
        outlines.append(np.concatenate([p + half, (p - half)[::-1]]))
    return _polygons(h, w, outlines)


def _polygons(h: int, w: int, polygons: list[np.ndarray]) -> np.ndarray:
    """Area coverage in [0, 1] of the union of filled polygons.

    They are filled on a binary canvas SS times larger and box-averaged: exact and
    deterministic, unlike cv2's LINE_AA whose fringe does not measure covered area.
    """
    canvas = np.zeros((h * SS, w * SS), np.uint8)
    for p in polygons:  # one call each: a single fillPoly would punch holes where they overlap
        cv2.fillPoly(canvas, [_pts(p)], FULL)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / FULL


def _paint(img: np.ndarray, cov: np.ndarray, colour: np.ndarray | float, alpha=1.0) -> None:
    """Alpha-blend `colour` into `img` (in place) where `cov` covers it."""
    a = np.clip(cov * alpha, 0, 1)[..., None]
    img += a * (colour - img)


def _line_style(rng: Rng) -> tuple[np.ndarray, float, float]:
    """Colour, opacity and width shared by wires and distractors: they differ only in shape."""
    grey = rng.uniform(0.04, 0.25) if rng.random() < 0.5 else rng.uniform(0.62, 0.95)
    colour = np.clip(grey + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32)
    # mostly 1.2-2 px (a wire that covers under half of every pixel it crosses has no label
    # at all, and a model cannot learn from dotted labels), sometimes up to 4 px
    width = rng.uniform(2.5, 4.0) if rng.random() < 0.1 else rng.uniform(1.2, 2.0)
    return colour, float(rng.uniform(0.7, 1.0)), float(width)


def _random_line(rng: Rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A point inside the image and a unit direction."""
    angle = rng.uniform(0, np.pi)
    return rng.uniform([0, 0], [w, h]), np.array([np.cos(angle), np.sin(angle)])


def _ground(rng: Rng, h: int, w: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fields cut by straight boundaries (with furrows), forest and water; returns the cuts."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    code = np.zeros((h, w), np.int32)
    cuts = []
    for bit in range(rng.integers(2, 6)):
        p, d = _random_line(rng, h, w)
        code |= (((xx - p[0]) * d[1] - (yy - p[1]) * d[0]) > 0).astype(np.int32) << bit
        cuts.append(np.stack([p - d * (h + w), p + d * (h + w)]))
    used = np.bincount(code.ravel(), minlength=1 << len(cuts)) > 0
    label, n = (np.cumsum(used) - 1)[code], int(used.sum())  # compact field ids
    colours = FIELD[rng.integers(len(FIELD), size=n)] * rng.uniform(0.8, 1.2, (n, 1))
    img = colours.astype(np.float32)[label]
    # ploughed furrows in half the fields: fine periodic lines, another thin straight texture
    angle, freq = rng.uniform(0, np.pi, n), 2 * np.pi / rng.uniform(3, 9, n)
    depth = rng.uniform(0.03, 0.1, n) * (rng.random(n) < 0.5)
    kx, ky, depth = (v.astype(np.float32)[label]
                     for v in (np.cos(angle) * freq, np.sin(angle) * freq, depth))
    img *= (1 + depth * np.sin(xx * kx + yy * ky))[..., None]
    img *= 1 + 0.07 * _noise(rng, h, w, 8)[..., None]
    if rng.random() < 0.2:
        water = cv2.GaussianBlur((_noise(rng, h, w, 64) > 0.9).astype(np.float32), (0, 0), 1)
        _paint(img, water, WATER * (1 + 0.05 * _noise(rng, h, w, 16))[..., None])
    if rng.random() < 0.6:
        forest = cv2.GaussianBlur((_noise(rng, h, w, 48) > rng.uniform(0.3, 1.3))
                                  .astype(np.float32), (0, 0), 1.5)
        crowns = np.clip(1 + 0.4 * _noise(rng, h, w, 3), 0.3, 2)[..., None]
        _paint(img, forest, FOREST * crowns)
    return img, cuts


def _roads(rng: Rng, img: np.ndarray) -> None:
    """Straight roads whose edges and markings are thin high-contrast lines."""
    h, w = img.shape[:2]
    for _ in range(rng.choice(3, p=[0.45, 0.4, 0.15])):
        p, d = _random_line(rng, h, w)
        n, width = np.array([-d[1], d[0]]), rng.uniform(4, 10)
        ends = np.stack([p - d * (h + w), p + d * (h + w)])
        _paint(img, _lines(h, w, [ends], width), ROAD[rng.integers(len(ROAD))])
        if rng.random() < 0.6:
            colour, alpha, thin = _line_style(rng)
            edges = [ends + n * s * (width / 2 - thin / 2) for s in (-1, 1)]
            _paint(img, _lines(h, w, edges, thin), colour, alpha)


def _buildings(rng: Rng, img: np.ndarray, sun: np.ndarray) -> None:
    """Gable roofs (two shades and a ridge line) with cast shadows."""
    h, w = img.shape[:2]
    for _ in range(rng.choice(6, p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.1])):
        c, d = _random_line(rng, h, w)
        n, (a, b) = np.array([-d[1], d[0]]), rng.uniform([5, 3], [16, 9])
        ridge = np.stack([c + d * a, c - d * a])
        halves = [np.concatenate([ridge, ridge[::-1] + n * b * s]) for s in (1, -1)]
        whole = np.concatenate([ridge + n * b, ridge[::-1] - n * b])
        img *= (1 - 0.45 * _polygons(h, w, [whole + sun * 0.5]))[..., None]
        colour = ROOF[rng.integers(len(ROOF))] * rng.uniform(0.85, 1.15)
        for half, shade in zip(halves, (1.0, rng.uniform(0.65, 0.85)), strict=True):
            _paint(img, _polygons(h, w, [half]), colour * shade)
        if rng.random() < 0.7:
            colour, alpha, thin = _line_style(rng)
            _paint(img, _lines(h, w, [ridge], thin), colour, alpha)


def _fences(rng: Rng, img: np.ndarray, cuts: list[np.ndarray]) -> None:
    """Fences, tracks and hedges: straight thin lines styled exactly like wires."""
    h, w = img.shape[:2]
    segments = [cut for cut in cuts if rng.random() < 0.35]  # field-edge tracks, full length
    for _ in range(rng.integers(0, 4)):
        p, d = _random_line(rng, h, w)
        segments.append(np.stack([p, p + d * rng.uniform(20, 1.2 * max(h, w))]))
    for seg in segments:
        colour, alpha, width = _line_style(rng)
        _paint(img, _lines(h, w, [seg], width), colour, alpha)


def _catenary(t: np.ndarray, k: float) -> np.ndarray:
    """Sag profile of a hanging cable over t in [0, 1]: 0 at the towers, 1 mid-span."""
    edge = np.cosh(k / 2)
    return (edge - np.cosh(k * (t - 0.5))) / (edge - 1)


def _power_line(rng: Rng, h: int, w: int, centre: np.ndarray, tower_at_centre: bool):
    """Wires (polylines) and tower positions of one corridor through `centre`."""
    angle = rng.uniform(0, np.pi)
    d, n = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    span, reach = rng.uniform(0.8, 2.5) * max(h, w), h + w
    stops = (0.0 if tower_at_centre else rng.uniform(0, span)) + span * np.arange(
        -int(reach // span) - 2, int(reach // span) + 3)
    inside = [s for s in stops if 0 <= (centre + d * s)[0] < w and 0 <= (centre + d * s)[1] < h]
    if inside and rng.random() < 0.2:  # the corridor ends at a tower inside the image
        stops = stops[stops <= rng.choice(inside)]
    n_wires, spacing = rng.choice([2, 3, 4], p=[0.55, 0.3, 0.15]), rng.uniform(4, 10)
    offsets = (np.arange(n_wires) - (n_wires - 1) / 2) * spacing
    t = np.linspace(0, 1, 32)[:, None]
    wires = []
    for s0, s1 in zip(stops[:-1], stops[1:], strict=True):
        sag = rng.uniform(-0.02, 0.02) * span * _catenary(t, rng.uniform(1, 4))  # oblique view
        base = centre + d * (s0 + t * (s1 - s0)) + n * sag
        wires += [base + n * o for o in offsets]
    towers = [(centre + d * s, d, n, offsets[-1] + 3) for s in stops]
    return wires, towers


def _tower_shapes(rng: Rng, towers: list, sun: np.ndarray) -> tuple[list, list, list]:
    """Lattice strokes, label footprints and shadow strokes of the towers."""
    strokes, feet, shadows = [], [], []
    for c, d, n, arm in towers:
        a = rng.uniform(5, 8)
        sq = np.stack([c + a * (d + n), c + a * (d - n), c - a * (d + n), c - a * (d - n)])
        strokes += [np.concatenate([sq, sq[:1]]), sq[[0, 2]], sq[[1, 3]],
                    np.stack([c - n * arm, c + n * arm])]
        feet += [sq, np.stack([c + n * arm + d, c - n * arm + d, c - n * arm - d, c + n * arm - d])]
        shadows.append(np.stack([c, c + sun * 2.5]))  # towers are tall: long thin shadows
    return strokes, feet, shadows


def _power_lines(rng: Rng, h: int, w: int) -> tuple[list, list]:
    """Usually one corridor, sometimes none or two (crossing at a tower): bundles and towers."""
    bundles, towers = [], []
    for i in range(rng.choice(3, p=[0.08, 0.84, 0.08])):
        centre, cross = rng.uniform([0, 0], [w, h]), i > 0 and rng.random() < 0.5
        if cross:  # put the second corridor's tower on the first one's axis
            p, d = towers[0][:2]
            foot = p + d * np.dot(np.array([w, h]) / 2 - p, d)  # closest to the image centre
            centre = foot + d * rng.uniform(-0.3, 0.3) * min(h, w)
        wires, more = _power_line(rng, h, w, centre, cross)
        bundles.append((wires, _line_style(rng)))
        towers += more
    return bundles, towers


def _draw_power_lines(rng: Rng, img: np.ndarray, bundles: list, towers: list,
                      sun: np.ndarray) -> np.ndarray:
    """Paint shadows, towers and wires into `img`; return the label mask."""
    h, w = img.shape[:2]
    strokes, feet, tower_shadows = _tower_shapes(rng, towers, sun)
    shade = np.maximum(_lines(h, w, [p + sun for wires, _ in bundles for p in wires], 1.5),
                       _lines(h, w, tower_shadows, 3.0))
    img *= (1 - rng.uniform(0.2, 0.45) * cv2.GaussianBlur(shade, (0, 0), 0.8))[..., None]
    metal = rng.uniform(0.1, 0.3) if rng.random() < 0.5 else rng.uniform(0.6, 0.85)
    _paint(img, _lines(h, w, strokes, rng.uniform(1, 1.8)), metal, 0.9)
    mask = np.full((h, w), BACKGROUND, np.uint8)
    for wires, (colour, alpha, width) in bundles:
        cov = _lines(h, w, wires, width)
        glint = np.clip(1 + 0.25 * _noise(rng, h, w, 16), 0.5, 1.4)  # specular varies along
        _paint(img, cov, colour, alpha * glint)
        mask[cov >= 0.5] = LINE  # the label ignores opacity and blur: a wire is a wire
    mask[_polygons(h, w, feet) >= 0.5] = TOWER
    return mask


def _camera(rng: Rng, img: np.ndarray) -> np.ndarray:
    """Exposure, white balance, uneven light, optics blur and sensor noise -> uint8 RGB."""
    img = img * rng.uniform(0.8, 1.15) * rng.normal(1, 0.04, 3).astype(np.float32)
    img *= 1 + 0.08 * _noise(rng, *img.shape[:2], 96)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.35, 0.8))
    img += rng.normal(0, 0.012, img.shape).astype(np.float32)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def generate_scene(rng: Rng, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one aerial scene from `rng`: an HxWx3 uint8 RGB image and its HxW uint8 mask.

    The mask is LINE where a wire covers at least half a pixel, TOWER on tower
    footprints and BACKGROUND elsewhere, including every distractor and shadow.
    """
    sun_angle = rng.uniform(0, 2 * np.pi)  # one light direction for all shadows
    sun = np.array([np.cos(sun_angle), np.sin(sun_angle)]) * rng.uniform(4, 12)
    img, cuts = _ground(rng, height, width)
    _roads(rng, img)
    _buildings(rng, img, sun)
    _fences(rng, img, cuts)
    mask = _draw_power_lines(rng, img, *_power_lines(rng, height, width), sun)
    return _camera(rng, img), mask
