"""Predict power-line masks with a model folder (model.json + model.pt) or an exported ONNX file.

    python -m pipeline.predict --model checkpoints/final/hqs_l0-0.5 --input photo.jpg --out masks/
    python -m pipeline.predict --model export/model.onnx --input images/ --out masks/ --probability
    python -m pipeline.predict --model export/model.onnx --input scene.tif --out lines/ --vector

Images (jpg, png, tif, bmp): writes <name>.png (0 = background, 255 = line) per image,
<name>_prob.png (line probability x 255) with --probability, and <name>_overlay.png with
--overlay: the predicted line pixels in orange (colour-blind safe), drawn 1 px wider on each
side so thin wires show, over the photo in dimmed grey (pipeline/overlay.py, as in the
report). Photos with a long side above predict.max_whole px run in blended overlapping
windows, as scenes do, so memory stays flat however large the photo.

Scenes: a .tif/.tiff with a CRS or a geotransform (or any TIFF with --scene) is predicted
in overlapping, blended windows with windowed reads and writes, so its size is not
limited by memory. Writes <stem>_mask.tif (0 background, 1 line, 255 nodata), with
--probability <stem>_prob.tif (probability x 254, 255 nodata), with --vector
<stem>_lines.geojson (LineStrings in the scene's CRS with a `length` in its units); the
GeoTIFFs keep the scene's CRS and transform, in 256 px deflate tiles. Pixels that are
nodata in the scene are nodata in the outputs. Bands, scaling (for 16-bit or float
scenes), window size, overlap and batch come from the `predict` section of --params
(params.yaml), and the flags below override them. See pipeline/inference/ for the details.

The threshold is the model's tuned one unless given (--threshold must lie strictly between 0
and 1; anything else is refused with one line and exit status 2 before any file is written).
Outputs are written to temporary files and renamed when complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.config import PredictCfg


def _csv(kind: type) -> Any:
    """An argparse type for comma-separated values, e.g. --bands 3,2,1."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def _probability(text: str) -> float:
    """An argparse type for a threshold strictly between 0 and 1 (0 marks every pixel, 1 none)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
    return value


def predict_config(params: Path | None, args: argparse.Namespace) -> PredictCfg:
    """The `predict` section of `params` (defaults if None), with the CLI flags given on top."""
    from pipeline.params import load_params, parse_section

    values = dict(load_params(params).get("predict") or {}) if params else {}
    for key in ("tile", "overlap", "batch", "bands", "scaling", "value_range", "max_whole"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return parse_section({"predict": values}, "predict", PredictCfg, f"{params or 'defaults'} + flags")


def parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    from pipeline.cli import OneLineParser

    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (model.json + model.pt) or .onnx file")
    p.add_argument("--input", type=Path, required=True, help="an image, a GeoTIFF scene, or a folder of them")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--threshold", type=_probability,
                   help="line probability cut in (0, 1) (default: the model's tuned threshold)")
    p.add_argument("--probability", action="store_true", help="also write the probability (<name>_prob.png/.tif)")
    p.add_argument("--overlay", action="store_true", help="photos: also write <name>_overlay.png, the predicted "
                   "lines in orange (colour-blind safe, drawn 1 px wider each side) over the photo in dimmed grey")
    p.add_argument("--threads", type=int, help="CPU threads (default: the runtime's choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: PyTorch on the GPU, or ONNX Runtime's CUDA provider (onnxruntime-gpu)")
    p.add_argument("--params", type=Path, help="params file (default: params.yaml if present, else built-in)")
    p.add_argument("--max-whole", type=int, help="photos with a longer side (px) run in windows (predict.max_whole)")
    g = p.add_argument_group("windows and scenes (GeoTIFF)", "defaults from the `predict` section of --params")
    g.add_argument("--scene", action="store_true", help="treat every .tif/.tiff as a scene, georeferenced or not")
    g.add_argument("--vector", action="store_true", help="also write <stem>_lines.geojson: the mask skeletonised, "
                   "traced, simplified (predict.simplify px) and without lines under predict.min_length px")
    g.add_argument("--tile", type=int, help="window side in px, a multiple of 32 (predict.tile)")
    g.add_argument("--overlap", type=int, help="px shared by neighbouring windows, a multiple of 32 (predict.overlap)")
    g.add_argument("--batch", type=int, help="windows per forward pass (predict.batch)")
    g.add_argument("--bands", type=_csv(int), help="bands used as R,G,B (or one grey band), from 1, e.g. 3,2,1 "
                   "(predict.bands; default 1,2,3)")
    g.add_argument("--scaling", choices=("auto", "percentile", "fixed"),
                   help="to 0..255: auto = uint8 as is, other dtypes by percentile; percentile = per-band "
                        "predict.percentiles stretch; fixed = --value-range (predict.scaling)")
    g.add_argument("--value-range", type=_csv(float), help="low,high mapped to 0..255 with --scaling fixed, "
                   "e.g. 0,10000 (predict.value_range)")
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and predict."""
    from pipeline.cli import run

    args = parser().parse_args(argv)

    def body() -> None:
        from pipeline.inference.predictor import Predictor
        from pipeline.inference.route import input_images, predict_inputs

        logging.getLogger("rasterio").setLevel(logging.WARNING)  # GDAL errors arrive as exceptions too
        inputs = input_images(args.input)
        params = args.params or (Path("params.yaml") if Path("params.yaml").exists() else None)
        cfg = predict_config(params, args)
        predictor = Predictor(args.model, args.threads, args.device)
        if predictor.synthetic_only():  # once per run, before any image
            print(f"WARNING: {args.model} was trained on synthetic wires only (its model card's training_data); "
                  f"expect it to miss real wires", file=sys.stderr)
        images, scenes = predict_inputs(predictor, inputs, args.out, cfg, args.threshold, args.probability,
                                        args.vector, args.scene, args.overlay)
        print(f"wrote {len(images)} mask(s) and {len(scenes)} scene(s) to {args.out}")

    run(body)


if __name__ == "__main__":
    main()
