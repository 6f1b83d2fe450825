"""Safe loading: tensors-only checkpoints, safe YAML, no eval/exec anywhere in the code."""

from __future__ import annotations

import ast
import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

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


def test_a_clean_checkpoint_loads(model_folder, params):
    model, folder = model_folder
    fresh = create_model(ModelCfg.model_validate(params["model"]))  # positive control: the project's own files load
    load_weights(fresh, folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))


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


SAFE_LOADERS = {"UniqueKeyLoader": "pipeline.params", "PresetLoader": "pipeline.preset"}  # SafeLoader subclasses


def test_the_named_yaml_loaders_are_safe_loaders():
    for name, module in SAFE_LOADERS.items():
        assert issubclass(getattr(importlib.import_module(module), name), yaml.SafeLoader)


def unsafe_loads(source: str, label: str) -> list[str]:
    """Calls in `source` that could run code while loading: torch.load without
    weights_only=True, PyYAML without a safe loader, ruamel's unsafe loader, eval, exec, pickle."""
    problems = []
    tree = ast.parse(source, label)
    pyyaml = any(isinstance(n, ast.Import) and any(a.name == "yaml" for a in n.names) for n in ast.walk(tree))
    for name, call in _calls(tree):
        keywords = {k.arg: k.value for k in call.keywords}
        where = f"{label}:{call.lineno}"
        if name == "torch.load" and not (isinstance(keywords.get("weights_only"), ast.Constant)
                                         and keywords["weights_only"].value is True):
            problems.append(f"{where}: torch.load without weights_only=True")
        if pyyaml and name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load") and not (
                isinstance(keywords.get("Loader"), ast.Name) and keywords["Loader"].id in SAFE_LOADERS):
            problems.append(f"{where}: {name} with an unsafe loader")
        typ = keywords.get("typ")  # ruamel.yaml: only its round-trip (default) and safe loaders
        if name == "YAML" and isinstance(typ, ast.Constant) and typ.value not in ("rt", "safe"):
            problems.append(f"{where}: ruamel YAML(typ={typ.value!r})")
        builtin = isinstance(call.func, ast.Name)  # model.eval() is not eval()
        if (builtin and name in ("eval", "exec")) or name in ("pickle.load", "pickle.loads"):
            problems.append(f"{where}: {name}")
    return problems


def test_the_code_loads_nothing_unsafely():
    problems = [p for path in CODE for p in unsafe_loads(path.read_text(), str(path.relative_to(ROOT)))]
    assert len(CODE) > 30 and not problems, problems


def test_the_audit_can_fail(tmp_path):
    bad = ("import torch, yaml\nfrom ruamel.yaml import YAML\ntorch.load('x')\nyaml.load(open('y'))\neval('1')\n"
           "YAML(typ='unsafe').load('z')\n")
    assert len(unsafe_loads(bad, "bad.py")) == 4
    ruamel_only = "from ruamel.yaml import YAML\nyaml = YAML()\nyaml.load('z')\n"  # round trip: safe
    assert unsafe_loads(ruamel_only, "ok.py") == []


def test_a_bad_params_file_is_one_line_from_every_stage(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 3\n  epochs: 4\n")
    done = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare", "--params", str(tmp_path / "params.yaml"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "duplicate key 'epochs'" in done.stderr and not (tmp_path / "out").exists()
