"""The device latency table the PLDU benchmark's latency arms prune through (issue 15).

Made on this machine at the start of a run, before anything trains (timing needs the
machine to itself): the preset's dense architecture's layer files at 384x544 (pipeline.
latency.layers, grid step `bench.latency_step`), and the whole model, timed by deploy/
time_layers.py into <work>/latency-table. A table timed on another CPU or with another
thread count is made again. Its manifest and timings are among a latency arm's inputs
(`table_hash`), so arms pruned through different tables are never compared as one.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from bench.records import ROOT, config_hash
from pipeline.config import ModelCfg

SIZE = (384, 544)  # H x W: the PLDU images' evaluation size, as bench.round_to and the issue time them
FOLDER = "latency-table"


def table_folder(work: Path) -> Path:
    return work / FOLDER


def ensure_table(work: Path, model_cfg: ModelCfg, step: int, threads: int = 2) -> Path:
    """<work>/latency-table for the architecture `model_cfg` builds, made and timed here
    unless it already holds this machine's timings."""
    from pipeline.latency.files import write_files
    from pipeline.latency.layers import conv_layers
    from pipeline.models import create_model
    from pipeline.pruning.latency_target import same_device

    folder = table_folder(work)
    timings = folder / "timings.json"
    if timings.exists() and same_device(json.loads(timings.read_text()).get("fingerprint", {}), threads):
        return folder
    model = create_model(model_cfg).eval()  # latency does not depend on the weights' values
    source = f"bench preset: {model_cfg.arch}-{model_cfg.encoder} (dense)"
    manifest = write_files(conv_layers(model, *SIZE), folder, step, 0.25, list(SIZE), source, model)
    print(f"{folder}: timing {len(manifest['files'])} latency-table files on this machine", flush=True)
    spec = importlib.util.spec_from_file_location("deploy_time_layers", ROOT / "deploy" / "time_layers.py")
    time_layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(time_layers)
    time_layers.main([str(folder), "--threads", str(threads), "--out", str(timings)])
    return folder


def table_hash(work: Path) -> str:
    """sha256 of the table's manifest and timings (what a latency arm decides on)."""
    folder = table_folder(work)
    return config_hash([json.loads((folder / name).read_text()) for name in ("manifest.json", "timings.json")])
