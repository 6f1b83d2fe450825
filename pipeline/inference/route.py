"""Which inputs are photos and which are scenes, and each to its route."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PredictCfg
from pipeline.errors import PipelineError
from pipeline.inference.photos import predict_images
from pipeline.inference.predictor import Predictor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


def input_images(path: Path) -> list[Path]:
    """The image itself, or the images in a folder (sorted)."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise PipelineError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    return [path]


def predict_inputs(predictor: Predictor, inputs: list[Path], out: Path, cfg: PredictCfg,
                   threshold: float | None = None, probability: bool = False, vector: bool = False,
                   all_tiffs_are_scenes: bool = False, with_overlay: bool = False) -> tuple[list[Path], list[Path]]:
    """Scenes (georeferenced TIFFs, or every TIFF with `all_tiffs_are_scenes`) go the scene
    route, everything else the image route; returns (images, scenes) done."""
    scenes = []
    if any(p.suffix.lower() in TIFF_SUFFIXES for p in inputs):
        from pipeline.inference.scene import predict_scene  # rasterio only when there are TIFFs
        from pipeline.inference.scene_reader import is_scene

        scenes = [p for p in inputs if (all_tiffs_are_scenes and p.suffix.lower() in TIFF_SUFFIXES) or is_scene(p)]
        if scenes and with_overlay:
            raise PipelineError(f"{scenes[0]}: --overlay is for photos; open a scene's _mask.tif over it in a GIS")
        for scene in scenes:
            written = predict_scene(predictor, scene, out, cfg, threshold, probability, vector)
            print(f"{scene} -> {', '.join(str(p) for p in written.values())}")
    images = [p for p in inputs if p not in scenes]
    if images:
        predict_images(predictor, images, out, threshold, probability, cfg, with_overlay)
    return images, scenes
