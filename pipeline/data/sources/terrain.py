"""Ground textures for the `wires` renderer: a top-down canvas that the camera then views.

Everything is drawn on a ground canvas (one pixel = one ground cell, north up) and warped
into the image by the camera's ground homography, so roads, fences and roof lines converge
under perspective just as wires do. Textures are fractal (power falling with frequency, as
in natural images) rather than flat colour. Fences, roof ridges and branches use the wires'
own widths and grey levels, so neither colour nor texture finds a wire; road markings are
paint, and fences end within the view, because a long dark line crossing the whole view
is, in real photos, nearly always a wire (teaching otherwise cost the model clear wires
over plain roads).
"""

from __future__ import annotations

import cv2
import numpy as np

Rng = np.random.Generator
# (dark, bright) RGB of each material; a texture value in [0, 1] blends between them
MATERIALS = {
    "foliage": ([.07, .11, .05], [.62, .62, .40]),
    "grass": ([.18, .27, .10], [.45, .52, .26]),
    "soil": ([.30, .22, .15], [.62, .50, .36]),
    "concrete": ([.48, .48, .46], [.74, .73, .70]),
    "asphalt": ([.18, .18, .19], [.38, .38, .39]),
    "gravel": ([.38, .35, .31], [.64, .60, .54]),
}


def fractal(rng: Rng, h: int, w: int, roughness: float, finest: int = 1) -> np.ndarray:
    """Multi-octave noise with zero mean and unit variance; an octave of cell size c has
    amplitude c**roughness (roughness 1: the 1/f amplitude spectrum of natural scenes)."""
    total = np.zeros((h, w), np.float32)
    cell = finest
    while cell <= max(h, w):
        rows, cols = h // cell + 3, w // cell + 3
        small = rng.standard_normal((rows, cols)).astype(np.float32)
        big = cv2.resize(small, (cols * cell, rows * cell), interpolation=cv2.INTER_CUBIC)
        total += cell ** roughness * big[:h, :w]
        cell *= 2
    return (total - total.mean()) / (total.std() + 1e-6)


def squash(x: np.ndarray, contrast: float) -> np.ndarray:
    """Map noise to [0, 1] with a sigmoid: high contrast gives leaves and gaps, low gives grain."""
    return 1 / (1 + np.exp(-contrast * x))


def material(rng: Rng, h: int, w: int, name: str) -> np.ndarray:
    """An HxWx3 float texture of one material, brightness varying at every scale."""
    dark, bright = (np.asarray(c, np.float32) * rng.uniform(0.85, 1.15) for c in MATERIALS[name])
    if name == "foliage":  # crowns of leaves: bright blades, dark gaps, shaded clumps
        # leaves 1-8 cells across: fine canopy far away, single leaves close up
        leaves = squash(fractal(rng, h, w, 0.0, finest=int(rng.integers(1, 9))), rng.uniform(2.5, 5))
        clumps = squash(fractal(rng, h, w, 0.8, finest=4), 2)
        value = leaves * (0.35 + 0.65 * clumps)
    else:
        value = squash(fractal(rng, h, w, rng.uniform(0.1, 0.6)), rng.uniform(0.8, 2))
    return dark + value[..., None] * (bright - dark)


def line_style(rng: Rng) -> tuple[np.ndarray, float]:
    """Grey level and width (ground cells) of a thin distractor: the same range as wires."""
    grey = rng.uniform(0.08, 0.3) if rng.random() < 0.5 else rng.uniform(0.55, 0.9)
    return np.clip(grey + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32), float(rng.uniform(1, 4))


def paint(rng: Rng) -> np.ndarray:
    """Road-marking paint: white or yellow, brighter than any wire's dark tone."""
    white = np.full(3, rng.uniform(0.75, 0.95))
    return (white if rng.random() < 0.7 else white * [1.0, 0.85, 0.35]).astype(np.float32)


def _draw(img: np.ndarray, lines: list[np.ndarray], colour, width: float, alpha: float = 1.0) -> None:
    """Anti-aliased polylines (sub-pixel via cv2's fixed-point shift) blended into `img`."""
    layer = np.zeros(img.shape[:2], np.float32)
    shift = 4
    coords = [np.round(np.asarray(pts) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2) for pts in lines]
    cv2.polylines(layer, coords, False, 1.0, max(1, round(width)), cv2.LINE_AA, shift)
    a = (alpha * layer)[..., None]
    img += a * (np.asarray(colour, np.float32) - img)


def _fill(img: np.ndarray, polygon: np.ndarray, texture: np.ndarray) -> None:
    """Paint `texture` inside a polygon (anti-aliased edge)."""
    layer = np.zeros(img.shape[:2], np.float32)
    coords = np.round(polygon * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(layer, [coords], 1.0, cv2.LINE_AA, 4)
    img += layer[..., None] * (texture - img)


def _segment(rng: Rng, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random point on the canvas, a unit direction and its normal."""
    angle = rng.uniform(0, np.pi)
    d = np.array([np.cos(angle), np.sin(angle)])
    return rng.uniform(0, size, 2), d, np.array([-d[1], d[0]])


def _roads(rng: Rng, img: np.ndarray) -> None:
    """Roads and paths with kerbs, edge lines and dashed markings."""
    size = img.shape[0]
    for _ in range(rng.choice(3, p=[0.4, 0.45, 0.15])):
        p, d, n = _segment(rng, size)
        half, ends = rng.uniform(6, 30), np.stack([p - 2 * size * d, p + 2 * size * d])
        band = np.concatenate([ends + n * half, (ends - n * half)[::-1]])
        _fill(img, band, material(rng, size, size, str(rng.choice(["asphalt", "concrete", "gravel"]))))
        # markings are paint: a dark thin line spanning the view is a wire's look, not a road's
        for side in (-1, 1):
            if rng.random() < 0.6:
                colour, width = paint(rng), rng.uniform(1, 4)
                _draw(img, [ends + side * n * (half - width)], colour, width)
        if rng.random() < 0.4:  # dashed centre line
            colour, width = paint(rng), rng.uniform(1, 4)
            dash, t = rng.uniform(8, 20), np.arange(-2 * size, 2 * size, 1.0)
            dashes = [np.stack([p + d * start, p + d * (start + dash)]) for start in t[::int(2 * dash)]]
            _draw(img, dashes, colour, width)


def _fences_and_branches(rng: Rng, img: np.ndarray) -> None:
    """Fences (straight, with posts), paving joints and curved branches."""
    size = img.shape[0]
    for _ in range(rng.integers(0, 3)):  # fences end within the view and have posts
        p, d, n = _segment(rng, size)
        colour, width = line_style(rng)
        length = rng.uniform(0.15, 0.6) * size
        _draw(img, [np.stack([p, p + d * length])], colour, width)
        posts = [np.stack([p + d * s - n, p + d * s + n]) for s in np.arange(0, length, rng.uniform(8, 25))]
        _draw(img, posts, colour, width + 1)
    if rng.random() < 0.3:  # paving joints: a grid of faint thin lines
        _, d, n = _segment(rng, size)
        pitch, colour = rng.uniform(10, 40), line_style(rng)[0]
        joints = [np.stack([a * k - b * 2 * size, a * k + b * 2 * size])
                  for k in np.arange(-size, 2 * size, pitch) for a, b in ((d, n), (n, d))]
        _draw(img, joints, colour, 1, 0.5)
    for _ in range(rng.integers(0, 6)):  # branches: thin, curved, bright or dark
        colour, width = line_style(rng)
        steps = rng.normal(0, 0.25, 24).cumsum() + rng.uniform(0, 2 * np.pi)
        pts = rng.uniform(0, size, 2) + rng.uniform(2, 6) * np.stack(
            [np.cos(steps), np.sin(steps)], 1).cumsum(0)
        _draw(img, [pts], colour, width, rng.uniform(0.6, 1))


def _roofs(rng: Rng, img: np.ndarray) -> None:
    """Rectangular roofs: two shades, a ridge line and a hard edge."""
    size = img.shape[0]
    for _ in range(rng.choice(4, p=[0.5, 0.25, 0.15, 0.1])):
        c, d, n = _segment(rng, size)
        a, b = rng.uniform(15, 60), rng.uniform(10, 35)
        base = material(rng, size, size, str(rng.choice(["concrete", "asphalt", "soil"])))
        for side, shade in ((1, 1.0), (-1, rng.uniform(0.6, 0.9))):
            half = np.stack([c - d * a, c + d * a, c + d * a + side * n * b, c - d * a + side * n * b])
            _fill(img, half, base * shade)
        colour, width = line_style(rng)
        _draw(img, [np.stack([c - d * a, c + d * a])], colour, width)


def ground(rng: Rng, size: int) -> np.ndarray:
    """A size x size x 3 float ground canvas: patches of materials, roads, roofs, fences."""
    names = list(MATERIALS)
    img = material(rng, size, size, str(rng.choice(names, p=[.35, .2, .15, .1, .1, .1])))
    for _ in range(rng.integers(0, 3)):  # irregular patches of another material
        patch = squash(fractal(rng, size, size, 1.2, finest=4) - rng.uniform(0, 1.5), 6)[..., None]
        img += patch * (material(rng, size, size, str(rng.choice(names))) - img)
    _roads(rng, img)
    _roofs(rng, img)
    _fences_and_branches(rng, img)
    return img


def occluder(rng: Rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Foliage close to the camera, in front of the wires: its colour and opacity (HxW)."""
    blob = fractal(rng, h, w, 1.5, finest=4) + 2.5 * _ramp(rng, h, w) - rng.uniform(1.5, 3)
    alpha = squash(blob, 8) * squash(fractal(rng, h, w, 0.2, finest=2) + 1, 3)
    return material(rng, h, w, "foliage") * rng.uniform(0.6, 1.1), np.clip(alpha, 0, 1)


def _ramp(rng: Rng, h: int, w: int) -> np.ndarray:
    """A linear ramp from one random image side: occluders grow in from the frame edge."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    r = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    return r / (0.5 * max(h, w))
