"""dvc.yaml lists every project file each stage loads, so editing one re-runs the stage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.deps import compact, covered, import_closure, stage_modules, write_deps
from tests.conftest import ROOT

FIX = "run `python -m pipeline.deps --write` to rewrite the code deps in dvc.yaml"
STAGES = stage_modules(ROOT / "dvc.yaml")


def missing_deps(root: Path) -> dict[str, list[str]]:
    """{stage: project files its command loads that its dvc.yaml deps do not cover}."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    missing = {}
    for stage, module in stage_modules(root / "dvc.yaml").items():
        deps = [dep for dep in stages[stage].get("deps", []) if isinstance(dep, str)]
        uncovered = sorted(p.as_posix() for p in import_closure(module, root) if not covered(p, deps))
        if uncovered:
            missing[stage] = uncovered
    return missing


def test_every_stage_is_found():
    assert set(STAGES) == {"prepare", "baseline", "augment", "loss", "prune", "finetune", "pick", "export",
                           "report"}


def test_dvc_yaml_covers_every_file_each_stage_loads():
    missing = missing_deps(ROOT)
    listed = "\n".join(f"  {stage}: {', '.join(files)}" for stage, files in missing.items())
    assert not missing, f"dvc.yaml misses code its stages load ({FIX}):\n{listed}"


def test_closure_includes_lazy_imports_and_named_modules():
    report = import_closure("pipeline.stages.report")
    assert Path("pipeline/memory.py") in report  # run as `python -m pipeline.memory` in a subprocess
    prepare = import_closure("pipeline.stages.prepare")
    assert Path("pipeline/data/sources/geotiff.py") in prepare  # imported inside create_source only


def test_a_folder_is_listed_only_when_all_its_files_load():
    for module in STAGES.values():
        closure = import_closure(module)
        deps = compact(closure)
        assert all(covered(path, deps) for path in closure)
        for folder in (ROOT / dep for dep in deps if (ROOT / dep).is_dir()):
            files = {p.relative_to(ROOT) for p in folder.rglob("*.py")}
            assert files <= closure, f"{folder} is listed but {sorted(files - closure)} do not load"
    report = compact(import_closure(STAGES["report"]))
    assert "pipeline/report" in report and "pipeline/data" not in report  # data/prepare.py is not loaded
    assert not covered(Path("pipeline/data/prepare.py"), report)


def test_every_module_a_stage_imports_is_in_its_closure():
    """The static closure against what Python really loads when it imports each stage module."""
    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))")
    for stage in ("export", "report"):
        module = STAGES[stage]
        done = subprocess.run([sys.executable, "-c", code, module], cwd=ROOT, capture_output=True, text=True,
                              check=True)
        loaded = {Path(f).resolve() for f in done.stdout.split()}
        project = {p.relative_to(ROOT) for p in loaded if p.is_relative_to(ROOT / "pipeline")}
        assert project and project <= import_closure(module), project - import_closure(module)


def test_write_rewrites_only_code_deps_and_keeps_comments(tmp_path):
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "dvc.yaml").read_text()
    stale = text.replace("      - pipeline/config.py\n", "", 1)
    (tmp_path / "dvc.yaml").write_text("# a comment that must stay\n" + stale)
    assert missing_deps(tmp_path)  # the stage that lost config.py is reported
    assert write_deps(tmp_path)
    assert not missing_deps(tmp_path)
    written = (tmp_path / "dvc.yaml").read_text()
    assert written.startswith("# a comment that must stay\n")
    before, after = yaml.safe_load(text)["stages"], yaml.safe_load(written)["stages"]
    for stage, body in before.items():
        assert {k: v for k, v in body.items() if k != "deps"} == {k: v for k, v in after[stage].items()
                                                                   if k != "deps"}
        kept = [dep for dep in body.get("deps", []) if not dep.startswith("pipeline")]
        assert after[stage]["deps"][:len(kept)] == kept  # data and models first, in their order
    assert write_deps(tmp_path) == []  # a second run changes nothing


@pytest.mark.parametrize("stage", ["export", "report"])
def test_missing_file_is_reported(stage, tmp_path):
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages["stages"][stage]["deps"].remove(f"pipeline/stages/{stage}.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(stages))
    assert missing_deps(tmp_path)[stage] == [f"pipeline/stages/{stage}.py"]
