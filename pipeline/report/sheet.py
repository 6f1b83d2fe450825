"""A figure of images and text placed in pixels, images drawn 1:1 (one figure pixel per image
pixel: no resampling), so a full-resolution crop stays full resolution in the PNG."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

DPI = 100  # any value works: sizes are set in pixels; it only sets what a font point is


@dataclass
class Sheet:
    """Images and text at pixel positions (x, y from the top left) on a `width` px page."""

    width: int
    images: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    texts: list[tuple[int, int, str, dict[str, Any]]] = field(default_factory=list)
    legends: list[tuple[int, int, dict[str, tuple[int, int, int]]]] = field(default_factory=list)

    def image(self, x: int, y: int, picture: np.ndarray) -> int:
        """Place an HxW(x3) uint8 picture with its top left at (x, y); returns its bottom y."""
        self.images.append((x, y, picture))
        return y + picture.shape[0]

    def text(self, x: int, y: int, text: str, **style: Any) -> None:
        """Place text with its top left at (x, y); `style`: matplotlib text properties."""
        self.texts.append((x, y, text, style))

    def legend(self, x: int, y: int, entries: dict[str, tuple[int, int, int]]) -> None:
        """A one-line legend of colour swatches {label: RGB 0..255} with its top left at (x, y)."""
        self.legends.append((x, y, entries))

    def save(self, path: Path, height: int) -> None:
        """Draw everything on a width x height px PNG."""
        fig = plt.figure(figsize=(self.width / DPI, height / DPI), dpi=DPI)
        for x, y, picture in self.images:
            rows, cols = picture.shape[:2]
            ax = fig.add_axes((x / self.width, 1 - (y + rows) / height, cols / self.width, rows / height))
            ax.imshow(picture, interpolation="none", aspect="auto", cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
        for x, y, text, style in self.texts:
            fig.text(x / self.width, 1 - y / height, text, va="top", ha="left", **style)
        for x, y, entries in self.legends:
            handles = [Patch(facecolor=np.asarray(colour) / 255, label=label) for label, colour in entries.items()]
            fig.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(x / self.width, 1 - y / height),
                ncol=len(handles),
                frameon=False,
                fontsize=9,
                borderaxespad=0,
                borderpad=0,
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": it would move the pixels
        plt.close(fig)
