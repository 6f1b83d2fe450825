"""Benchmark of scene prediction: throughput of the dense vs the final (pruned) model, and
peak memory of `predict` for a small vs a large scene.

    python -m bench.scene                       # checkpoints/dense vs checkpoints/final/hqs_l0-0.5
    python -m bench.scene --dense D --final F --threads 1 --rounds 3

Scenes: synthetic RGB uint8 GeoTIFFs in EPSG:32633 (0.1 m pixels), a mosaic of the
project's synthetic generator (512 px patches with fields, roads, wires, distractors)
plus a few long dark lines drawn across the whole scene; written strip by strip into
--work (cached). Throughput: both models run `predict_scene` (mask only, no vector) on
the --throughput-size scene, interleaved in one run: per round each model once, the
order alternating, after one warm-up each; MP/s = scene megapixels / wall time (reading,
inference, blending, writing). The ratio is the median over rounds of the paired ratio
dense time / final time. Peak memory: `python -m pipeline.predict` on each scene size
(with --probability --vector) in a fresh process, which reports its VmHWM at the end.
Writes bench/results/scene.json and scene.md and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from bench.tables import write_results

ROOT = Path(__file__).resolve().parents[1]
STRIP = 512
_PEAK = ("import json, sys; from pipeline.predict import main; from pipeline.memory import _rss_mb; "
         "main(sys.argv[1:]); print(json.dumps({'peak_mb': _rss_mb()}))")


def make_scene(path: Path, size: int, seed: int = 0) -> Path:
    """A size x size synthetic RGB GeoTIFF, written strip by strip (memory ~ one strip)."""
    from pipeline.data.sources.scenes import generate_scene

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    # long straight lines across the scene, as (x0, y0, x1, y1), drawn into every strip
    lines = [rng.uniform(0, size, 4).round().astype(int) for _ in range(4)]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": from_origin(500_000.0, 6_000_000.0, 0.1, 0.1), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate"}
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        for y0 in range(0, size, STRIP):
            rows = min(STRIP, size - y0)
            strip = np.concatenate([generate_scene(rng, rows, min(STRIP, size - x0))[0]
                                    for x0 in range(0, size, STRIP)], axis=1)
            for x0, ya, x1, yb in lines:
                cv2.line(strip, (int(x0), int(ya - y0)), (int(x1), int(yb - y0)), (40, 40, 40), 2)
            dst.write(np.ascontiguousarray(strip.transpose(2, 0, 1)), window=Window(0, y0, size, rows))
    os.replace(tmp, path)
    return path


def onnx_of(model: Path, work: Path) -> Path:
    """The model folder exported to ONNX in `work`, afresh every run (a cached file would
    outlive a retrained model of the same name)."""
    from pipeline.artifact import load_model
    from pipeline.export import export_onnx

    path = work / f"{model.name}.onnx"
    net, card = load_model(model)
    export_onnx(net, card, path, 256, 256)
    return path


def throughput(models: dict[str, Path], scene: Path, work: Path, rounds: int, threads: int | None) -> dict[str, Any]:
    """Interleaved timing of predict_scene for each model on one scene."""
    from pipeline.config import PredictCfg
    from pipeline.inference.predictor import Predictor
    from pipeline.inference.scene import predict_scene

    with rasterio.open(scene) as src:
        megapixels = src.width * src.height / 1e6
    predictors = {name: Predictor(path, threads) for name, path in models.items()}
    cfg, names = PredictCfg(), list(models)
    times: dict[str, list[float]] = {name: [] for name in names}

    def run(name: str) -> float:
        start = time.perf_counter()
        predict_scene(predictors[name], scene, work / "out" / name, cfg, progress=False)
        return time.perf_counter() - start

    for name in names:  # warm-up
        run(name)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(run(name))
            print(f"  round {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    ratios = [d / f for d, f in zip(times["dense"], times["final"], strict=True)]
    return {"megapixels": megapixels, "seconds": times,
            "mp_per_s": {name: megapixels / statistics.median(t) for name, t in times.items()},
            "ratio_final_over_dense": statistics.median(ratios), "paired_ratios": ratios}


def peak_memory(model: Path, scene: Path, out: Path, threads: int | None) -> dict[str, float]:
    """Peak RSS (VmHWM) and wall time of `python -m pipeline.predict` in a fresh process."""
    cmd = [sys.executable, "-c", _PEAK, "--model", str(model), "--input", str(scene), "--out", str(out),
           "--probability", "--vector", *(["--threads", str(threads)] if threads else [])]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"predict failed on {scene}: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with rasterio.open(scene) as src:
        result["megapixels"] = src.width * src.height / 1e6
    result["seconds"] = time.perf_counter() - start
    lines = out / f"{scene.stem}_lines.geojson"
    result["lines"] = len(json.loads(lines.read_text())["features"])
    return result


def markdown(record: dict[str, Any]) -> str:
    """The results as a short Markdown report."""
    rows = ["| runtime | dense MP/s | final MP/s | final / dense |", "|---|---|---|---|"]
    for runtime, t in record["throughput"].items():
        rows.append(f"| {runtime} | {t['mp_per_s']['dense']:.2f} | {t['mp_per_s']['final']:.2f} | "
                    f"{t['ratio_final_over_dense']:.2f} |")
    mem = ["| runtime | scene | MP | peak RSS (MB) | wall (s) | lines |", "|---|---|---|---|---|---|"]
    for runtime, sizes in record["memory"].items():
        for size, m in sizes.items():
            mem.append(f"| {runtime} | {size} | {m['megapixels']:.1f} | {m['peak_mb']:.0f} | {m['seconds']:.0f} | "
                       f"{m['lines']} |")
    s = record["setup"]
    return "\n".join([
        "# Scene prediction benchmark", "",
        f"`python -m bench.scene` on {s['machine']}; threads: {s['threads']}; tile {s['tile']}, overlap "
        f"{s['overlap']}, batch {s['batch']}; 1-min load average {s['load_before']} before the run, "
        f"{s.get('load_after')} after it. {s['note']}", "",
        f"Throughput on the {record['throughput_size']} px scene (median of {s['rounds']} interleaved rounds; "
        "ratio = median paired dense time / final time):", "", *rows, "",
        "Peak memory of `predict --probability --vector` with the final model, fresh process each:", "", *mem, ""])


def main(argv: list[str] | None = None) -> None:
    """Generate the scenes, measure, write bench/results/scene.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", type=Path, default=ROOT / "checkpoints" / "dense")
    p.add_argument("--final", type=Path, default=ROOT / "checkpoints" / "final" / "hqs_l0-0.5")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "scene")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192], help="scene sides for peak memory")
    p.add_argument("--throughput-size", type=int, default=2048, help="scene side for the throughput rounds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads per runtime (default: the runtime's choice)")
    p.add_argument("--runtimes", nargs="+", default=["onnx", "torch"], choices=("onnx", "torch"))
    p.add_argument("--note", default="", help="a sentence on the conditions, kept with the results")
    args = p.parse_args(argv)
    from pipeline.config import PredictCfg

    args.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    scenes = {size: make_scene(args.work / f"scene_{size}.tif", size) for size in {*args.sizes, args.throughput_size}}
    paths = {"torch": {"dense": args.dense, "final": args.final},
             "onnx": {"dense": onnx_of(args.dense, args.work), "final": onnx_of(args.final, args.work)}}
    cfg = PredictCfg()
    record: dict[str, Any] = {"setup": {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": args.threads or "runtime default",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "tile": cfg.tile, "overlap": cfg.overlap,
        "batch": cfg.batch, "rounds": args.rounds, "load_before": round(load, 2),
        "dense": str(args.dense), "final": str(args.final), "note": args.note}, "throughput_size": args.throughput_size,
        "throughput": {}, "memory": {}}
    for runtime in args.runtimes:
        print(f"throughput, {runtime}:", flush=True)
        record["throughput"][runtime] = throughput(paths[runtime], scenes[args.throughput_size],
                                                   args.work / runtime, args.rounds, args.threads)
        record["memory"][runtime] = {}
        for size in args.sizes:
            print(f"peak memory, {runtime}, {size} px ...", flush=True)
            record["memory"][runtime][f"{size}x{size}"] = peak_memory(
                paths[runtime]["final"], scenes[size], args.work / "peak" / runtime, args.threads)
    record["setup"]["load_after"] = round(os.getloadavg()[0], 2)
    write_results(args.out, "scene", record, markdown(record))


if __name__ == "__main__":
    main()
