"""End to end: `dvc repro` on a tiny config in a temporary copy of the project."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.preset import apply_preset
from tests.conftest import ROOT, reset_project, run

STAGES = ("prepare", "baseline", "augment", "loss", "prune", "finetune", "pick", "export", "report")
SECTIONS = ("## Verdict", "## Speed", "## Pruning", "## Training curves", "## Test predictions", "## Export",
            "## Model card", "## INT8")


@pytest.fixture
def project(tiny_project) -> Path:
    return tiny_project[0]


@pytest.mark.slow
def test_dvc_repro_runs_end_to_end_then_does_nothing(tiny_project):
    project, first = tiny_project
    pruning = [f"{stage}@{method}-0.5" for stage in ("prune", "finetune") for method in ("hqs_l0", "magnitude")]
    for stage in ("prepare", "baseline", "augment", "loss", *pruning, "pick", "export", "report"):
        assert f"Running stage '{stage}'" in first
    baseline = json.loads((project / "reports" / "baseline.json").read_text())
    assert baseline["winner"] in baseline["candidates"]
    assert (project / "checkpoints" / "final" / "hqs_l0-0.5" / "model.pt").exists()
    report = (project / "reports" / "report.md").read_text()
    assert "| hqs_l0-0.5 fine-tuned |" in report and "| magnitude-0.5 after removal |" in report
    assert "saliency gap" in report and all(section in report for section in SECTIONS)
    html = (project / "reports" / "report.html").read_text()
    images = report.count("![") + report.count('<img src="figures/')  # Markdown images and wide raw ones
    assert html.count('src="data:image/png;base64,') == images and 'src="figures' not in html
    rows = json.loads((project / "reports" / "report.json").read_text())
    shown = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=project,
                           capture_output=True, text=True, check=True).stdout
    figures = json.loads(shown)[""]["data"]["reports/summary.json"]["data"]  # the only metrics file
    picked = json.loads((project / "reports" / "pick.json").read_text())
    dense = next(name for name in rows if name.endswith("(dense)"))
    ship = dense if picked["choice"] == "dense" else f"{picked['choice']} fine-tuned"
    assert figures["ship_iou"] == rows[ship]["test/iou"]  # the pick stage's choice
    assert f"Recommended model: `{picked['choice']}`" in "\n".join(report.splitlines()[:40])
    assert rows["hqs_l0-0.5 fine-tuned"]["eager_speedup"] > 0 and rows["hqs_l0-0.5 fine-tuned"]["onnx_mb"] > 0
    int8 = json.loads((project / "reports" / "int8.json").read_text())  # quantize.enabled by default
    assert (project / "export" / "int8" / "model.int8.onnx").exists() is int8["accepted"]
    assert "![IoU vs measured latency" in report and f"| {picked['choice']} INT8" in report
    assert "synthetic wires only" in report.partition("## Model card")[2]  # the shipped card's known limits
    second = run([sys.executable, "-m", "dvc", "repro"], project)
    assert "Running stage" not in second, second


@pytest.mark.slow
def test_swapping_the_model_is_a_param_change_that_skips_prepare(project: Path):
    try:
        run([sys.executable, "-m", "dvc", "repro"], project)
        out = run([sys.executable, "-m", "dvc", "exp", "run", "baseline", "-S", "model.arch=FPN",  # up to baseline
                   "-S", "model.encoder=mobilenet_v2"], project)
        assert "Running stage 'baseline'" in out
        assert "Running stage 'prepare'" not in out
        assert "FPN-mobilenet_v2" in json.loads((project / "reports" / "baseline.json").read_text())["candidates"]
    finally:  # `dvc exp run` leaves its params and outputs in the workspace: later tests need the repro'd project
        reset_project(project)


def report_runs(project: Path) -> set[str]:
    """The pruning runs the report lists (rows "<run> after removal" and "<run> fine-tuned")."""
    rows = json.loads((project / "reports" / "report.json").read_text())
    names = [name.rsplit(" ", 1)[0] for name in rows if name.endswith(" fine-tuned")]
    assert sorted(name + " after removal" for name in names) == sorted(n for n in rows if n.endswith(" removal"))
    return set(names)


def repro_with_sweep(project: Path, methods: list[str], overrides: Path) -> str:
    """Set sweep.methods in params.yaml, run `dvc repro`; its log."""
    overrides.write_text(json.dumps({"sweep": {"methods": methods}}))  # JSON is YAML
    apply_preset(overrides, project / "params.yaml")
    return run([sys.executable, "-m", "dvc", "repro"], project)


@pytest.mark.slow
def test_the_report_follows_the_sweep(project: Path, tmp_path: Path):
    """Change the sweep (a run out, a run in), then shrink it: the report re-runs and lists
    exactly its runs; the records of runs that left it (here also an l1 run whose model never
    was, as in a fresh clone of the default run's repository) break nothing."""
    reset_project(project)  # whatever an earlier test left, start from the repro'd project
    for stage in ("prune", "finetune"):
        records = project / "reports" / stage
        (records / "l1-0.5.json").write_text((records / "magnitude-0.5.json").read_text())
    try:
        steps = [(["hqs_l0", "random"], {"random"}), (["hqs_l0"], set())]
        for methods, trained in steps:
            out = repro_with_sweep(project, methods, tmp_path / "sweep.json")
            assert "Running stage 'report'" in out
            assert report_runs(project) == {f"{m}-0.5" for m in methods}
            assert "Running stage 'finetune@hqs_l0-0.5'" not in out  # runs that stay are not redone
            if trained:
                assert all(f"Running stage 'finetune@{m}-0.5'" in out for m in trained)
    finally:
        reset_project(project)
    status = run([sys.executable, "-m", "dvc", "status"], project)
    assert "up to date" in status, status  # the runs the test added are gone again


def help_text(command: str, monkeypatch, capsys) -> str:
    """What `python -m <command> --help` (or `python <command> --help` for a script path)
    prints, run in this process: a fresh interpreter per command cost ~10 s of imports each."""
    monkeypatch.setattr(sys, "argv", [command, "--help"])
    with pytest.raises(SystemExit) as done:
        if command.endswith(".py"):
            runpy.run_path(str(ROOT / command), run_name="__main__")
        else:
            runpy.run_module(command, run_name="__main__", alter_sys=True)
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy on an imported module
@pytest.mark.parametrize("module", [f"pipeline.stages.{s}" for s in STAGES] + ["pipeline.preset"])
def test_every_command_has_help(module: str, monkeypatch, capsys):
    out = help_text(module, monkeypatch, capsys)
    assert "usage:" in out and "--params" in out


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("command", ["pipeline.predict", "pipeline.memory", "bench.pldu", "deploy/onnx_latency.py",
                                     "bench.latency_table", "bench.latency", "bench.round_to"])
def test_tools_have_help(command: str, monkeypatch, capsys):
    assert "usage:" in help_text(command, monkeypatch, capsys)


@pytest.mark.slow
def test_models_round_trip_through_a_local_dvc_remote(project: Path, tmp_path: Path):
    """README's shareable cache: `dvc push` to a folder remote, a fresh clone, `dvc pull`:
    the exact model bytes, no rebuild."""
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    run([sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "here", str(remote)], project)
    try:
        run([sys.executable, "-m", "dvc", "push"], project)
        run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
        run([sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "here", str(remote)], clone)
        run([sys.executable, "-m", "dvc", "pull"], clone)
        model = Path("checkpoints") / "final" / "hqs_l0-0.5" / "model.pt"
        assert (clone / model).read_bytes() == (project / model).read_bytes()
        assert "up to date" in run([sys.executable, "-m", "dvc", "status"], clone)
    finally:
        (project / ".dvc" / "config.local").unlink(missing_ok=True)
