"""Trees close to the camera for the `wires` renderer: single leaves and bare twigs.

Seen from a UAV flying beside a line, the wires often pass in front of crowns whose
leaves are 5-30 px across and whose twigs are thin, dark, curved lines: the commonest
false alarms of a wire detector. The ground canvas (pipeline.data.sources.terrain) only
holds vegetation seen from far away, so these are drawn in image space, at image scale.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.data.sources.terrain import fractal, squash

Rng = np.random.Generator
SHIFT = 4  # cv2 fixed-point bits: sub-pixel leaf and twig positions
LEAF_HUES = np.array([[0.22, 0.32, 0.12], [0.34, 0.38, 0.15], [0.50, 0.46, 0.20], [0.20, 0.28, 0.17]], np.float32)


def _leaves(rng: Rng, colour: np.ndarray, alpha: np.ndarray, where: np.ndarray) -> None:
    """Overlapping elliptical leaves of one size class inside `where`, lit and shaded."""
    h, w = alpha.shape
    size = np.exp(rng.uniform(np.log(4), np.log(24)))
    hue = LEAF_HUES[rng.integers(len(LEAF_HUES))] * rng.uniform(0.8, 1.2)
    count = int(where.mean() * h * w / (0.25 * size * size))
    ys, xs = rng.uniform(0, h, count), rng.uniform(0, w, count)
    inside = where[ys.astype(int), xs.astype(int)]
    for x, y in zip(xs[inside], ys[inside], strict=True):
        long = size * rng.uniform(0.6, 1.3) / 2
        axes = (int(long * (1 << SHIFT)), int(long * rng.uniform(0.3, 0.6) * (1 << SHIFT)))
        centre = (int(x * (1 << SHIFT)), int(y * (1 << SHIFT)))
        grey = rng.uniform(0, 0.5)  # sunlit leaves read whiter (specular), shaded ones darker
        tone = hue + grey * (hue.mean() - hue)
        shade = tuple(float(c) for c in np.clip(tone * rng.uniform(0.2, 1.5), 0, 1))
        angle = rng.uniform(0, 180)  # one angle for colour and opacity: the leaf's shape is its cut-out
        cv2.ellipse(colour, centre, axes, angle, 0, 360, shade, -1, cv2.LINE_AA, SHIFT)
        cv2.ellipse(alpha, centre, axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA, SHIFT)


def _branch(rng: Rng, layer: np.ndarray, start: np.ndarray, angle: float, length: float, width: float,
            level: int) -> None:
    """One curved, tapering twig and, recursively, the twigs it splits into."""
    steps = 8
    turns = angle + np.cumsum(rng.normal(0, 0.3, steps))  # crooked: a long straight twig reads as a wire
    pts = start + np.cumsum(length / steps * np.stack([np.cos(turns), np.sin(turns)], 1), 0)
    coords = np.round(np.vstack([start, pts]) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [coords], False, 1.0, max(1, round(width)), cv2.LINE_AA, SHIFT)
    if level < 5 and length > 6:
        for _ in range(int(rng.integers(2, 4))):
            fork = pts[int(rng.integers(steps // 2, steps))]
            _branch(rng, layer, fork, turns[-1] + rng.choice([-1, 1]) * rng.uniform(0.3, 0.9),
                    length * rng.uniform(0.5, 0.75), width * 0.7, level + 1)


def near_tree(rng: Rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An HxWx3 colour and HxW opacity of a crown close to the camera: leaves, twigs or both."""
    colour, alpha = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    crown = squash(fractal(rng, h, w, 1.5, finest=4) + rng.uniform(-0.5, 1.5), 4) > 0.5
    if rng.random() < 0.8:
        colour[:] = rng.uniform(0.03, 0.15)  # the dark inside of the crown between leaves
        gaps = squash(fractal(rng, h, w, 0.8, finest=2) + rng.uniform(0.5, 2), 3)
        alpha[:] = crown * gaps
        _leaves(rng, colour, alpha, crown)
    if rng.random() < 0.6:
        twigs = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            start = rng.uniform([0, h * 0.7], [w, h * 1.1])
            _branch(rng, twigs, start, rng.uniform(-2.6, -0.5), rng.uniform(0.15, 0.35) * h, rng.uniform(2, 6), 0)
        bark = np.full(3, rng.uniform(0.12, 0.35) if rng.random() < 0.7 else rng.uniform(0.5, 0.7), np.float32)
        colour += twigs[..., None] * (bark * rng.normal(1, 0.05, 3).astype(np.float32) - colour)
        alpha = np.maximum(alpha, twigs)
    return colour, np.clip(alpha, 0, 1)
