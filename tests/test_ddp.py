"""DDP on CPU: two gloo ranks must end with the same weights after training on disjoint shards.

Lightning's ddp strategy starts rank 1 by re-running the command line, so the training runs in
a script (tests/ddp_fit.py) in a subprocess, never in pytest's own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline import study
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from tests.conftest import ROOT

SCRIPT = ROOT / "tests" / "ddp_fit.py"
# set by an outer distributed launcher; inherited, they would make the script join its job
LAUNCHER_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "GLOBAL_RANK", "WORLD_SIZE", "RANK")


def run_ddp(out: Path, data: Path, timeout: float = 300) -> str:
    """Run the script (2 ranks, one thread each); return its output, fail on error or timeout."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # a session of its own, so a hang can be ended with both ranks (rank 1 is rank 0's child)
    with subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(data)], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail(f"DDP run timed out after {timeout} s:\n{output[-3000:]}")
    assert proc.returncode == 0, f"DDP run failed:\n{output[-3000:]}"
    return output


@pytest.mark.slow
def test_ddp_ranks_end_equal_after_training_on_disjoint_shards(tiny_data: Path, tmp_path: Path):
    run_ddp(tmp_path, tiny_data)

    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0]["steps"] == records[1]["steps"] > 0  # equal weights mean nothing without a step
    weights = [torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    differing = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differing, f"ranks ended with different weights: {differing[:5]}"

    manifest = json.loads((tiny_data / "manifest.json").read_text())
    train = {f["name"] for f in manifest["files"] if f["split"] == "train"}
    epochs = records[0]["names"].keys()
    assert epochs and records[1]["names"].keys() == epochs
    for epoch in epochs:
        seen = [records[r]["names"][epoch] for r in (0, 1)]
        assert not set(seen[0]) & set(seen[1]), f"epoch {epoch}: both ranks trained on {set(seen[0]) & set(seen[1])}"
        assert sorted(seen[0] + seen[1]) == sorted(train), f"epoch {epoch}: the shards are not the train split"

    # only rank 0 evaluates and gets a result; it saved the model with val and test figures
    assert [r["returned_result"] for r in records] == [True, False]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert {"val/iou", "test/iou"} <= meta["metrics"].keys()
    assert (tmp_path / "model" / "model.pt").exists()
    assert (tmp_path / "logs" / "metrics.json").exists()


def test_a_study_on_a_rank_other_than_0_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(study, "fit", lambda *args, **kwargs: None)  # what fit returns there
    variants = [study.Variant("a", ModelCfg(), TrainCfg()), study.Variant("b", ModelCfg(), TrainCfg())]
    out = tmp_path / "model"
    assert study.run_study(variants, TrainerCfg(), tmp_path, tmp_path / "logs", 0, 2, 64, 0.0, out) is None
    assert not out.exists()
