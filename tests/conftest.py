"""Shared fixtures: tiny CPU configs, a tiny prepared data set, the real-data location.

The suite runs on every core (pytest-xdist, `--dist loadgroup` in pyproject.toml); tests
sharing an expensive fixture run on one worker (SHARED_FIXTURES)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.prepare import prepare
from pipeline.preset import apply_preset, merge

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


# fixture -> xdist group: its tests run on one worker, so the fixture is built once there, and
# tests that change the shared project and put it back (reset_project) never race
SHARED_FIXTURES = {"tiny_project": "tiny_project", "uninterrupted": "interruption"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of each shared fixture into its xdist group."""
    for item in items:
        for fixture, group in SHARED_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))


def _share_cores() -> None:
    """Under xdist, each worker (and the stages it starts) gets its share of the cores:
    2 workers of 2 threads each on 2 cores would fight over them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch  # here: the controlling process and -n 0 runs need no torch for this

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)


_share_cores()


def tiny_params() -> dict:
    """params.yaml with configs/tiny.yaml applied: 64 px images, narrow model, 1 epoch."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merge(params, yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text()))


@pytest.fixture(scope="session")
def params() -> dict:
    return tiny_params()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, params) -> Path:
    """A prepared synthetic data set of 16 images of 64x64."""
    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare(PrepareCfg.model_validate(params["prepare"]), BaseCfg.model_validate(params["base"]), out)
    return out


def require_shared(*parts: str) -> Path:
    """The path under ../shared/datasets, or skip: users' machines have no ../shared."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (it lives beside the project, in ../shared)")
    return path


def run(cmd: list[str], cwd: Path) -> str:
    """Run a command in `cwd`; fail the test with its output tail if it fails."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def copy_project(copy: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A git + DVC copy of the tracked project files in `copy`, with configs/tiny.yaml and
    then `overrides` applied to params.yaml, committed."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("data/prepared", "checkpoints/", "reports/")):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    apply_preset(copy / "configs" / "tiny.yaml", copy / "params.yaml")
    if overrides:
        (copy / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        apply_preset(copy / "overrides.yaml", copy / "params.yaml")
    run(["git", "init", "-q"], copy)
    run(["git", "add", "-A"], copy)
    run([*GIT, "commit", "-qm", "tiny"], copy)
    return copy


GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> tuple[Path, str]:
    """A tiny copy of the project after a whole `dvc repro` (and that run's log), its
    dvc.lock and results committed. Tests that change it put it back (`reset_project`)."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    log = run([sys.executable, "-m", "dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-qm", "repro"], project)
    return project, log


def reset_project(project: Path) -> None:
    """Back to the last commit: params, dvc.lock and (from the DVC cache) the outputs; files
    a test added (records and models of runs it added to the sweep) are removed."""
    run(["git", "reset", "-q", "--hard"], project)
    run(["git", "clean", "-qfd"], project)
    run([sys.executable, "-m", "dvc", "checkout", "--force"], project)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (and a busy second core stalls two of them)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
