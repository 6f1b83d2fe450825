"""The synthetic set relabelled the way PLD-UAV labels wires (bench.sim2real's outline arms).

PLD-UAV's masks are 1 px traces along a wire, along both of its edges where it is wide; the
synthetic masks cover the whole wire (the issue's coverage rule). Fine-tuning on PLDU may first
have to unlearn that shape. To test this, the outline arms pretrain on the same images with each
mask rewritten: a line pixel stays line where it touches a pixel that is not line (a wire 1-2 px
wide is all edge), the inside of a wider wire becomes ignore: taught neither as line nor as
background. Only the benchmark uses it; the pipeline's `pretrain` keeps the coverage rule.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from pipeline.labels import CLASS_NAMES, IGNORE_INDEX, LINE

CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # 4-neighbours: edges along a wire's sides


def outline_mask(mask: np.ndarray) -> np.ndarray:
    """The mask with each line region's inside (line pixels whose 4 neighbours are all line) ignored."""
    line = (mask == LINE).astype(np.uint8)
    inside = cv2.erode(line, CROSS, borderType=cv2.BORDER_REPLICATE).astype(bool)
    out = mask.copy()
    out[inside] = IGNORE_INDEX
    return out


def outline_set(source: Path, out: Path) -> Path:
    """A copy of the prepared set `source` with every mask outlined, made once in `out` (written
    into a temporary sibling and renamed, so an interrupted run leaves no half set)."""
    if out.is_dir():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    manifest = json.loads((source / "manifest.json").read_text())
    for split, figures in manifest["splits"].items():
        shutil.copytree(source / split / "images", partial / split / "images")
        (partial / split / "masks").mkdir(parents=True)
        pixels = np.zeros(256, np.int64)
        for path in sorted((source / split / "masks").glob("*.png")):
            outlined = outline_mask(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
            if not cv2.imwrite(str(partial / split / "masks" / path.name), outlined):
                raise OSError(f"{partial / split / 'masks' / path.name}: could not be written")
            pixels += np.bincount(outlined.ravel(), minlength=256)
        figures["fractions"] = {name: int(pixels[i]) / max(1, int(pixels.sum())) for i, name in CLASS_NAMES.items()}
    manifest["labels"] = "outline: line pixels on a wire's edge; the inside of wider wires ignored"
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
    partial.rename(out)
    return out
