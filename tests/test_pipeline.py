"""End to end: `dvc repro` on a tiny config in a temporary copy of the project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run

STAGES = ("prepare", "baseline", "augment", "loss", "prune", "finetune", "export", "report")
SECTIONS = ("## Speed", "## Pruning", "## Training curves", "## Test predictions", "## Export")


@pytest.fixture
def project(tiny_project) -> Path:
    return tiny_project[0]


@pytest.mark.slow
def test_dvc_repro_runs_end_to_end_then_does_nothing(tiny_project):
    project, first = tiny_project
    pruning = [f"{stage}@{method}-0.5" for stage in ("prune", "finetune") for method in ("hqs_l0", "magnitude")]
    for stage in ("prepare", "baseline", "augment", "loss", *pruning, "export", "report"):
        assert f"Running stage '{stage}'" in first
    baseline = json.loads((project / "reports" / "baseline.json").read_text())
    assert baseline["winner"] in baseline["candidates"]
    assert (project / "checkpoints" / "final" / "hqs_l0-0.5" / "model.pt").exists()
    report = (project / "reports" / "report.md").read_text()
    assert "| hqs_l0-0.5 fine-tuned |" in report and "| magnitude-0.5 after removal |" in report
    assert "saliency gap" in report and all(section in report for section in SECTIONS)
    html = (project / "reports" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == report.count("![") and 'src="figures' not in html
    rows = json.loads((project / "reports" / "report.json").read_text())
    shown = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=project,
                           capture_output=True, text=True, check=True).stdout
    figures = json.loads(shown)[""]["data"]["reports/report.json"]["data"]
    assert figures["hqs_l0-0.5 fine-tuned"]["test/iou"] == rows["hqs_l0-0.5 fine-tuned"]["test/iou"]
    assert rows["hqs_l0-0.5 fine-tuned"]["eager_speedup"] > 0 and rows["hqs_l0-0.5 fine-tuned"]["onnx_peak_mb"] > 0
    second = run([sys.executable, "-m", "dvc", "repro"], project)
    assert "Running stage" not in second, second


@pytest.mark.slow
def test_swapping_the_model_is_a_param_change_that_skips_prepare(project: Path):
    run([sys.executable, "-m", "dvc", "repro"], project)
    out = run([sys.executable, "-m", "dvc", "exp", "run", "baseline", "-S", "model.arch=FPN",  # up to baseline: fast
               "-S", "model.encoder=mobilenet_v2"], project)
    assert "Running stage 'baseline'" in out
    assert "Running stage 'prepare'" not in out
    assert "FPN-mobilenet_v2" in json.loads((project / "reports" / "baseline.json").read_text())["candidates"]


@pytest.mark.parametrize("module", [f"pipeline.stages.{s}" for s in STAGES] + ["pipeline.preset"])
def test_every_command_has_help(module: str):
    out = run([sys.executable, "-m", module, "--help"], ROOT)
    assert "usage:" in out and "--params" in out


@pytest.mark.parametrize("command", [["-m", "pipeline.predict"], ["-m", "pipeline.memory"], ["-m", "bench.pldu"],
                                     ["deploy/onnx_latency.py"]])
def test_tools_have_help(command: list[str]):
    assert "usage:" in run([sys.executable, *command, "--help"], ROOT)
