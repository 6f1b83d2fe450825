"""Line overlays readable with any common colour-vision deficiency: the one drawing that the
report's prediction figure and `predict --overlay` share.

The photo is shown in grey at DIM brightness, so no colour in it can pass for a marked
pixel, and the marks are Okabe & Ito's colour-blind-safe colours. Power lines are 1-2 px
wide, so marks are drawn `widen` px wider on each side, for display only: each pixel near
marks takes the colour of the nearest one, so the marked pixels keep their own colour.
numpy, OpenCV and SciPy only: the ONNX predict path runs without torch.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

# Okabe & Ito (2008), "Color universal design": distinguishable with protanopia,
# deuteranopia and tritanopia, and bright enough to stand out on a dimmed grey photo
HIT = (86, 180, 233)  # sky blue: a true line pixel predicted (true positive)
FALSE_ALARM = (213, 94, 0)  # vermillion: predicted, not a line (false positive)
MISS = (240, 228, 66)  # yellow: a line pixel not predicted (false negative)
PREDICTED = (230, 159, 0)  # orange: a predicted line pixel, no ground truth to compare with
DIM = 0.6  # brightness of the grey photo under the marks

LEGEND = {
    "line found (true positive)": HIT,
    "false alarm (false positive)": FALSE_ALARM,
    "line missed (false negative)": MISS,
}


def grey_backdrop(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8: the photo's luminance at DIM brightness, in all three channels."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) * DIM
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def display_widening(scale: float) -> int:
    """The px to widen marks by so a 1 px line is at least 2 px wide on screen once the picture
    is shown at `scale` (1 at full size, 0 when enlarged 2x or more, more when reduced)."""
    return max(0, math.ceil((2 / scale - 1) / 2))


def overlay(
    rgb: np.ndarray, pred: np.ndarray, true: np.ndarray | None = None, valid: np.ndarray | None = None, widen: int = 1
) -> np.ndarray:
    """HxWx3 uint8 RGB: predicted line pixels (bool HxW `pred`) over the grey dimmed photo.

    Without `true`: every predicted pixel in PREDICTED. With the ground truth `true` (bool
    HxW): hits in HIT, false alarms in FALSE_ALARM, misses in MISS; predictions outside
    `valid` (ignored pixels, e.g. void labels) are not marked. Every pixel within `widen` px
    (chessboard distance) of a marked one takes the colour of the nearest marked pixel, so
    marked pixels keep their own colour and thin lines widen without hiding their neighbours."""
    if true is None:
        layers = [(pred, PREDICTED)]
    else:
        valid = np.ones_like(pred, bool) if valid is None else valid
        layers = [(pred & true, HIT), (pred & ~true & valid, FALSE_ALARM), (~pred & true, MISS)]
    kinds = np.zeros(pred.shape, np.uint8)  # 0: unmarked, i: layers[i - 1]
    for kind, (mask, _) in enumerate(layers, start=1):
        kinds[mask] = kind
    out = grey_backdrop(rgb)
    if not kinds.any():
        return out
    distance, (rows, cols) = ndimage.distance_transform_cdt(kinds == 0, "chessboard", return_indices=True)
    near = distance <= widen
    palette = np.array([(0, 0, 0), *(colour for _, colour in layers)], np.uint8)
    out[near] = palette[kinds[rows[near], cols[near]]]
    return out
