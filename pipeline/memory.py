"""Peak memory of inference, measured in a fresh process per model.

A process that already trained or ran other models keeps their allocations, so the report
starts `python -m pipeline.memory` once per model and reads the JSON it prints.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux's VmHWM belongs to the process image, so it starts afresh at exec; ru_maxrss
    (the fallback elsewhere) carries over the forking parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model: Path, height: int, width: int, threads: int) -> dict[str, float]:
    """Load `model` (model folder or .onnx), run one batch-1 forward pass; peak RSS in MB
    before the pass (runtime + weights) and after it (plus activations and workspace)."""
    import numpy as np

    if model.suffix == ".onnx":  # the deployment path: ONNX Runtime only, no torch imported
        from pipeline.speed import onnx_runner
        step = onnx_runner(model, height, width, threads)
    else:
        from pipeline.artifact import load_model
        from pipeline.speed import torch_runner
        step = torch_runner(load_model(model)[0], height, width, threads)
    loaded = _rss_mb()
    np.asarray(step()[0])
    return {"loaded_mb": loaded, "peak_mb": _rss_mb()}


def peak_memory(model: Path, height: int, width: int, threads: int = 2) -> dict[str, float]:
    """Run `measure` for `model` in a fresh Python process and return its figures."""
    cmd = [sys.executable, "-m", "pipeline.memory", str(model), "--height", str(height), "--width", str(width),
           "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"{model}: memory measurement failed ({last})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Print the peak memory of one model as JSON (run by `peak_memory`)."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", type=Path, help="model folder (model.json + model.pt) or .onnx file")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    result: dict[str, Any] = measure(args.model, args.height, args.width, args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
