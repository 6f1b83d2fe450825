"""Safe loading: tensors-only checkpoints, safe YAML, no eval/exec anywhere in the code."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.artifact import load_weights, save_model
from pipeline.config import ModelCfg
from pipeline.errors import PipelineError
from pipeline.models import create_model
from pipeline.params import load_params
from tests.conftest import ROOT

CODE = [p for folder in ("pipeline", "bench", "deploy") for p in (ROOT / folder).rglob("*.py")]


class Payload:
    """Unpickling this runs a shell command: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.fixture
def model_folder(tmp_path, params) -> tuple[torch.nn.Module, Path]:
    model = create_model(ModelCfg.model_validate(params["model"]))
    save_model(model, tmp_path / "m", {"model": params["model"], "num_classes": 2})
    return model, tmp_path / "m"


def test_a_clean_checkpoint_loads(model_folder):
    model, folder = model_folder
    load_weights(model, folder)  # positive control: the project's own files load


def test_a_malicious_pickle_in_a_checkpoint_is_refused_and_never_runs(model_folder, tmp_path):
    model, folder = model_folder
    marker = tmp_path / "pwned"
    state = {k: v for k, v in model.state_dict().items()}
    state["extra"] = Payload(marker)
    with (folder / "model.pt").open("wb") as f:
        torch.save(state, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(PipelineError, match=r"model\.pt: cannot load weights"):
        load_weights(model, folder)
    assert not marker.exists()


def test_a_truncated_or_foreign_checkpoint_gives_one_line(model_folder, params):
    model, folder = model_folder
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(PipelineError, match="cannot load weights") as err:
        load_weights(model, folder)
    assert "\n" not in str(err.value)
    other = create_model(ModelCfg.model_validate({**params["model"], "arch": "FPN"}))
    save_model(other, folder, {"model": {**params["model"], "arch": "FPN"}, "num_classes": 2})
    with pytest.raises(PipelineError, match="cannot load weights") as err:
        load_weights(model, folder)  # another architecture's tensors
    assert "\n" not in str(err.value)


def test_yaml_refuses_duplicate_keys_and_python_tags(tmp_path):
    (tmp_path / "ok.yaml").write_text("train:\n  epochs: 3\n")
    assert load_params(tmp_path / "ok.yaml") == {"train": {"epochs": 3}}
    (tmp_path / "dup.yaml").write_text("train:\n  epochs: 3\n  lr: 0.1\n  epochs: 5\n")
    with pytest.raises(PipelineError, match=r"dup\.yaml: cannot read params \(duplicate key 'epochs'.*line 4"):
        load_params(tmp_path / "dup.yaml")
    marker = tmp_path / "pwned"
    (tmp_path / "tag.yaml").write_text(f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(PipelineError, match="cannot read params") as err:
        load_params(tmp_path / "tag.yaml")
    assert not marker.exists() and "\n" not in str(err.value)


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            found.append((f"{owner}.{name}" if owner else name, node))
    return found


def test_the_code_loads_nothing_unsafely():
    problems = []
    for path in CODE:
        for name, call in _calls(ast.parse(path.read_text(), str(path))):
            keywords = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name == "torch.load" and not (isinstance(keywords.get("weights_only"), ast.Constant)
                                             and keywords["weights_only"].value is True):
                problems.append(f"{where}: torch.load without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load") and not (
                    isinstance(keywords.get("Loader"), ast.Name) and keywords["Loader"].id == "UniqueKeyLoader"):
                problems.append(f"{where}: {name} with an unsafe loader")
            builtin = isinstance(call.func, ast.Name)  # model.eval() is not eval()
            if (builtin and name in ("eval", "exec")) or name in ("pickle.load", "pickle.loads"):
                problems.append(f"{where}: {name}")
    assert len(CODE) > 30 and not problems, problems


def test_the_audit_can_fail(tmp_path):
    bad = "import torch, yaml\ntorch.load('x')\nyaml.load(open('y'))\neval('1')\n"
    names = [name for name, _ in _calls(ast.parse(bad))]
    assert {"torch.load", "yaml.load", "eval"} <= set(names)


def test_a_bad_params_file_is_one_line_from_every_stage(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 3\n  epochs: 4\n")
    done = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare", "--params", str(tmp_path / "params.yaml"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "duplicate key 'epochs'" in done.stderr and not (tmp_path / "out").exists()
