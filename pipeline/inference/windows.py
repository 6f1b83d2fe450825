"""Prediction in overlapping, blended windows, one row-strip at a time: for scenes and large photos.

Windows. The model sees square windows of `tile` px (smaller only when the image is),
stepping by tile - overlap. Window starts are multiples of 32 (tile and overlap are), and
the last window of a row or column ends at the image size rounded up to 32 (zero-padded
in normalised space, as Predictor.probability pads an image), so every window shares the
network's downsampling grid and a pixel's prediction does not depend on which window it
came from, except for the context the window lacks.

Blending. Predictions near a window's edge lack context, so each window's probability is
weighted by a separable ramp, sin^2 over the `overlap` px next to each edge and 1 inside
(two overlapping windows then cross-fade with weights that sum to 1), floored at 1e-3 so
that an image edge seen by one window only keeps a defined value. The sums of weight x
probability and of weight are accumulated and divided. blend=False uses flat weights
(plain averaging), which leaves seams; it exists to show that the tests can see them.

Memory. Windows are processed one row-strip at a time; the accumulators cover one strip
(tile x image width, float32). When a strip is done, the rows the next strip cannot reach
are handed out, and the buffers move down. So memory does not grow with the image height,
and grows with its width only through the strip buffers (~40 MB at 8k wide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from pipeline.config import PAD_MULTIPLE, PredictCfg

if TYPE_CHECKING:
    from pipeline.inference.predictor import Predictor

# read(y0, x0, height, width) -> the window clipped to the image: (h, w, 3) uint8 RGB and (h, w) validity
WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]
_FLOOR = 1e-3


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts (multiples of 32 when tile and stride are) covering [0, length); the
    last window ends at length rounded up to 32, so at most 31 px of padding are computed."""
    end = -(-length // PAD_MULTIPLE) * PAD_MULTIPLE
    if end <= tile:
        return [0]
    return [*range(0, end - tile, stride), end - tile]


def ramp(size: int, overlap: int, blend: bool = True) -> np.ndarray:
    """1-D blending weights of a window: sin^2 rising over `overlap` px from each edge."""
    if not blend or overlap == 0:
        return np.ones(size, np.float32)
    centre = np.arange(size) + 0.5
    edge_distance = np.minimum(centre, size - centre)
    weight = np.sin(np.pi / 2 * np.minimum(edge_distance / overlap, 1.0)) ** 2
    return np.maximum(weight, _FLOOR).astype(np.float32)


class _Strip:
    """Weighted sums of one row-strip of windows; finished rows leave from the top."""

    def __init__(self, height: int, width: int) -> None:
        self.acc = np.zeros((height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)
        self.valid = np.zeros((height, width), bool)

    def add(self, x0: int, prob: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> None:
        """Accumulate one window (full window size) starting at column x0 of the strip."""
        cols = slice(x0, x0 + prob.shape[1])
        self.acc[:, cols] += prob * weight
        self.weight[:, cols] += weight
        self.valid[: valid.shape[0], x0: x0 + valid.shape[1]] |= valid

    def pop(self, rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Probability and validity of the top `rows` (first `width` columns); shift up."""
        weight = self.weight[:rows, :width]
        prob = np.divide(self.acc[:rows, :width], weight, out=np.zeros_like(weight), where=weight > 0)
        valid = self.valid[:rows, :width].copy()
        for buffer in (self.acc, self.weight, self.valid):
            buffer[: len(buffer) - rows] = buffer[rows:]  # numpy copies overlapping slices safely
            buffer[len(buffer) - rows:] = 0
        return prob, valid


def blended_rows(predictor: Predictor, read: WindowReader, height: int, width: int, cfg: PredictCfg,
                 desc: str = "", progress: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Run the model over a height x width image in blended windows (cfg.tile, overlap,
    batch, blend) and yield (y0, probability, validity) of each band of finished rows, top
    to bottom; the bands tile the image exactly."""
    th = min(cfg.tile, -(-height // PAD_MULTIPLE) * PAD_MULTIPLE)
    tw = min(cfg.tile, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE)
    stride = cfg.tile - cfg.overlap
    ys, xs = window_starts(height, th, stride), window_starts(width, tw, stride)
    weight = np.outer(ramp(th, cfg.overlap, cfg.blend), ramp(tw, cfg.overlap, cfg.blend))
    strip = _Strip(th, xs[-1] + tw)
    with tqdm(total=len(ys) * len(xs), desc=desc, unit="window", disable=not progress) as bar:
        for i, y0 in enumerate(ys):
            for start in range(0, len(xs), cfg.batch):
                chunk = xs[start: start + cfg.batch]
                _add_batch(predictor, read, strip, y0, chunk, weight)
                bar.update(len(chunk))
            rows = (ys[i + 1] if i + 1 < len(ys) else height) - y0  # rows no later strip reaches
            prob, valid = strip.pop(rows, width)
            yield y0, prob, valid


def _add_batch(predictor: Predictor, read: WindowReader, strip: _Strip, y0: int, xs: list[int],
               weight: np.ndarray) -> None:
    """Read the windows at (y0, x) for x in xs, run them as one batch, add them to the strip."""
    th, tw = weight.shape
    batch = np.zeros((len(xs), 3, th, tw), np.float32)  # 0 = padding, as in Predictor.probability
    valids = []
    for k, x0 in enumerate(xs):
        rgb, valid = read(y0, x0, th, tw)
        batch[k, :, : rgb.shape[0], : rgb.shape[1]] = predictor.normalise(rgb)
        valids.append(valid)
    for x0, prob, valid in zip(xs, predictor.probabilities(batch), valids, strict=True):
        strip.add(x0, prob, weight, valid)
