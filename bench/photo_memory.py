"""Benchmark of photo prediction memory: peak RSS of `python -m pipeline.predict` on 2, 20
and 45 megapixel JPEGs, each in a fresh process.

    python -m bench.photo_memory                        # an untrained default model, 1 thread
    python -m bench.photo_memory --model checkpoints/final/hqs_l0-0.5 --threads 2

Photos: synthetic 3:2 RGB JPEGs (quality 90; smooth random texture with dark lines), made
in a temporary folder: 1728x1152 (2 MP), 5472x3648 (20 MP, a common inspection drone's
camera), 8192x5464 (45 MP). Each runs `predict --probability` with the `predict` section of
params.yaml (photos whose long side exceeds max_whole run in blended windows) in a fresh
Python process that reports its VmHWM (peak resident set) at exit. --whole adds runs with
max_whole above every photo (the whole-image route, as before windows) for the sizes
given. Without --model the model is an untrained Unet-resnet18 of params.yaml's `model`
section (memory depends on the architecture, not on the weights), written with
pipeline.artifact.save_model. Writes bench/results/photo_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.tables import write_results

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"2 MP": (1728, 1152), "20 MP": (5472, 3648), "45 MP": (8192, 5464)}  # width, height
PACKAGES = ("torch", "segmentation-models-pytorch", "numpy", "opencv-python-headless", "pillow", "onnxruntime")
GOAL = 1.3  # 45 MP peak within 1.3x of 2 MP
_PEAK = ("import json, sys; from pipeline.predict import main; from pipeline.memory import _rss_mb; "
         "main(sys.argv[1:]); print(json.dumps({'peak_mb': _rss_mb()}))")


def make_photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A width x height JPEG: smooth random colour texture (upscaled noise) with dark lines."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x0, x1 = rng.integers(0, width, 2)
        cv2.line(image, (int(x0), 0), (int(x1), height - 1), (30, 30, 30), 3)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise SystemExit(f"{path}: cannot write JPEG")
    return path


def untrained_model(folder: Path) -> Path:
    """params.yaml's `model` section, randomly initialised, saved as a model folder."""
    import torch

    from pipeline.artifact import save_model
    from pipeline.config import ModelCfg
    from pipeline.models import create_model
    from pipeline.params import load_params

    torch.manual_seed(0)
    cfg = ModelCfg.model_validate(load_params(ROOT / "params.yaml")["model"])
    save_model(create_model(cfg).eval(), folder, {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5})
    return folder


def peak_rss(model: Path, photo: Path, out: Path, threads: int, extra: list[str]) -> dict[str, float]:
    """Peak RSS (VmHWM, MB) and wall time of `python -m pipeline.predict` in a fresh process."""
    cmd = [sys.executable, "-c", _PEAK, "--model", str(model), "--input", str(photo), "--out", str(out),
           "--probability", "--threads", str(threads), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"predict failed on {photo}: {done.stderr.strip().splitlines()[-1:]}")
    return {"peak_mb": json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"],
            "seconds": time.perf_counter() - start}


def setup(args: argparse.Namespace, model_note: str) -> dict[str, Any]:
    """Where and with what the figures were measured."""
    from pipeline.config import PredictCfg
    from pipeline.params import load_params, parse_section

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT).stdout.strip()
    cfg = parse_section(load_params(ROOT / "params.yaml"), "predict", PredictCfg)
    return {"commit": commit + (" (uncommitted changes)" if dirty else ""),
            "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "packages": {name: version(name) for name in PACKAGES},
            "threads": args.threads, "load_before": round(os.getloadavg()[0], 2), "model": model_note,
            "predict": cfg.model_dump(include={"max_whole", "tile", "overlap", "batch"})}


def markdown(record: dict[str, Any]) -> str:
    """The results as a short Markdown report."""
    s = record["setup"]
    rows = ["| photo | pixels | route | default settings | peak RSS (MB) | wall (s) |", "|---|---|---|---|---|---|"]
    for run in record["runs"]:
        rows.append(f"| {run['photo']} | {run['width']}x{run['height']} | {run['route']} | "
                    f"{'yes' if run['default'] else 'no'} | {run['peak_mb']:.0f} | {run['seconds']:.0f} |")
    versions = ", ".join(f"{k} {v}" for k, v in s["packages"].items())
    return "\n".join([
        "# Photo prediction memory", "",
        f"`python -m bench.photo_memory` at commit {s['commit']}; Python {s['python']}, {versions}; {s['machine']}, "
        f"{s['threads']} thread(s); 1-min load average {s['load_before']} before, {s['load_after']} after.", "",
        f"Model: {s['model']}", "",
        f"`python -m pipeline.predict --probability` on a synthetic JPEG, a fresh process per row; peak RSS = "
        f"VmHWM at exit. predict section: {s['predict']} (photos with a long side above max_whole run in "
        "blended windows; route `whole` = one pass over the photo, as every photo ran before; rows without "
        "default settings ran with --max-whole above the photo).", "",
        *rows, "",
        f"45 MP / 2 MP peak (windows route): **{record['ratio_45_over_2']:.2f}x** (goal: within {GOAL}x; "
        f"{'met' if record['ratio_45_over_2'] <= GOAL else 'NOT met'}).", ""])


def main(argv: list[str] | None = None) -> None:
    """Make the photos (and model), measure, write bench/results/photo_memory.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder or .onnx (default: an untrained default model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--whole", nargs="*", default=[], choices=list(SIZES),
                   help="sizes also run whole, as before windows (20 MP needs ~7 GB, 45 MP ~15 GB)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="photo_memory_") as tmp:
        work = Path(tmp)
        model = args.model or untrained_model(work / "model")
        note = (f"{args.model}" if args.model else "an untrained Unet-resnet18 (params.yaml `model` section, "
                "decoder_channels [128, 64, 32, 16, 8]) saved with pipeline.artifact.save_model: the DVC cache "
                "of this machine holds no trained model, and memory depends on the architecture, not the weights.")
        record: dict[str, Any] = {"setup": setup(args, note), "runs": []}
        max_whole = record["setup"]["predict"]["max_whole"]
        for name, (width, height) in SIZES.items():
            photo = make_photo(work / f"photo_{width}x{height}.jpg", width, height)
            long_side = max(width, height)
            runs = [("whole" if long_side <= max_whole else "windows", [])]
            if name in args.whole and long_side > max_whole:
                runs.append(("whole", ["--max-whole", str(long_side)]))
            for route, extra in runs:
                print(f"{name} ({route}) ...", flush=True)
                figures = peak_rss(model, photo, work / "out", args.threads, extra)
                record["runs"].append({"photo": name, "width": width, "height": height, "route": route,
                                       "default": not extra, **figures})
            photo.unlink()
    record["setup"]["load_after"] = round(os.getloadavg()[0], 2)
    peak = {run["photo"]: run["peak_mb"] for run in record["runs"] if run["default"]}
    record["ratio_45_over_2"] = peak["45 MP"] / peak["2 MP"]
    write_results(args.out, "photo_memory", record, markdown(record))


if __name__ == "__main__":
    main()
