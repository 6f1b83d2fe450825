"""dvc.yaml lists every project file each stage loads, so editing one re-runs the stage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.deps import (
    METHOD_STAGES,
    compact,
    covered,
    expected_deps,
    import_closure,
    is_code_dep,
    stage_modules,
    write_deps,
)
from pipeline.pruning.registry import METHODS
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


# Import a stage's module and parse the params sections it reads, as its main() does (the
# prune stage also creates its method: every registered one); print the files Python loaded.
LOAD_STAGE = """
import importlib, sys
from pipeline.params import load_sections
from pipeline.pruning.registry import METHODS, method_class
module, params, creates_methods, *sections = sys.argv[1:]
importlib.import_module(module)
load_sections(params, *sections)
if creates_methods == "1":
    for name in METHODS:
        method_class(name)
print("\\n".join(m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)))
"""


def params_sections(stage: str) -> list[str]:
    """The params.yaml sections a stage reads: its dvc.yaml `params` (`prune.epochs` is `prune`)."""
    listed = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage].get("params", [])
    return sorted({entry.split(".")[0] for entry in listed if isinstance(entry, str)})


# each costs an import of torch (about a minute on a busy 2-core machine): the stages whose
# closure leaves the registry's method modules out (prepare: no training code at all;
# finetune: the pruning run module; export; report: the `sweep` section names methods)
@pytest.mark.parametrize("stage", ["prepare", "finetune", "export", "report"])
def test_every_module_a_stage_loads_is_in_its_closure(stage):
    """The static closure against what Python really loads when it imports each stage
    module and parses its params sections (the `prune` section would load its methods' classes)."""
    module = STAGES[stage]
    args = [module, "params.yaml", "1" if module in METHOD_STAGES else "0", *params_sections(stage)]
    done = subprocess.run([sys.executable, "-c", LOAD_STAGE, *args], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    loaded = {Path(f).resolve() for f in done.stdout.split()}
    project = {p.relative_to(ROOT) for p in loaded if p.is_relative_to(ROOT / "pipeline")}
    closure = import_closure(module)
    assert project and project <= closure, sorted(p.as_posix() for p in project - closure)


def test_dvc_yaml_code_deps_are_exactly_the_computed_ones():
    """A dep missing re-runs nothing when its file changes; an extra one re-runs the stage
    for nothing (before: every stage listed every pruning method)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    wrong = {}
    for stage, expected in expected_deps(ROOT).items():
        listed = [dep for dep in stages[stage].get("deps", []) if isinstance(dep, str) and is_code_dep(dep)]
        if listed != expected:
            missing, extra = sorted(set(expected) - set(listed)), sorted(set(listed) - set(expected))
            wrong[stage] = f"missing {missing}, extra {extra}" if missing or extra else "out of order"
    listed = "\n".join(f"  {stage}: {problem}" for stage, problem in wrong.items())
    assert not wrong, f"dvc.yaml's code deps differ from the computed ones ({FIX}):\n{listed}"


def test_only_the_prune_stage_depends_on_the_method_modules():
    methods = {Path(*target.partition(":")[0].split(".")).with_suffix(".py") for target in METHODS.values()}
    assert methods <= import_closure(STAGES["prune"])
    # finetune imports pipeline/pruning/run.py, and with it methods.py, but no other method module
    for stage in set(STAGES) - {"prune", "finetune"}:
        assert not methods & import_closure(STAGES[stage]), stage
    assert import_closure(STAGES["finetune"]) & methods == {Path("pipeline/pruning/methods.py")}


def test_prepare_loads_no_training_code():
    prepare = {p.as_posix() for p in import_closure(STAGES["prepare"])}
    assert not prepare & {"pipeline/train.py", "pipeline/study.py", "pipeline/resume.py", "pipeline/module.py",
                          "pipeline/models.py", "pipeline/stages/_training.py", "pipeline/pruning/methods.py"}
    assert "pipeline/stages/_cli.py" in prepare


def test_adding_a_method_changes_the_prune_stage_deps_only(tmp_path):
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    before = expected_deps(tmp_path)
    (tmp_path / "pipeline" / "extra").mkdir()
    (tmp_path / "pipeline" / "extra" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "extra" / "new_method.py").write_text("class NewMethod:\n    pass\n")
    registry = tmp_path / "pipeline" / "pruning" / "registry.py"
    text = registry.read_text()
    registry.write_text(text.replace('METHODS: dict[str, str] = {  # name -> "module:Class"\n',
                                     'METHODS: dict[str, str] = {  # name -> "module:Class"\n'
                                     '    "new": "pipeline.extra.new_method:NewMethod",\n', 1))
    after = expected_deps(tmp_path)
    assert {stage for stage in before if before[stage] != after[stage]} == {"prune"}
    assert "pipeline/extra" in after["prune"]


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
