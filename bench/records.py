"""Per-run records of the benchmark: small JSON files committed under bench/results/, each
carrying the hashes of its inputs, so a benchmark can be run in slices over several
sessions (and machines) and a record whose inputs changed is re-run, never mixed in.

A record's inputs are: the code it ran (the project files its arm's module imports, see
`code_hash`), the prepared data, the model it started from, and the config it read.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from importlib import metadata
from modulefinder import ModuleFinder
from pathlib import Path
from typing import Any

import torch

from pipeline.artifact import WEIGHTS, write_json
from pipeline.config import Strict
from pipeline.params import SECTIONS, load_params, parse_section

ROOT = Path(__file__).resolve().parent.parent
# The method registry's list is left out of the code a run ran: adding a method to it must
# not re-run every other method (the method's own module is hashed instead, `code_hash`).
NOT_HASHED = {Path("pipeline/pruning/registry.py")}
PACKAGES = ("torch", "torchvision", "lightning", "segmentation-models-pytorch", "torch-pruning", "numpy",
            "scipy", "pyedgeeval", "onnxruntime")


def module_files(module: str) -> set[Path]:
    """Project files (relative to the root) that importing `module` loads: its import
    closure, imports inside functions included (modulefinder scans all bytecode)."""
    finder = ModuleFinder(path=[str(ROOT)])
    finder.import_hook(module)
    files = {Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__}
    return {f.relative_to(ROOT) for f in files if f.is_relative_to(ROOT)} - NOT_HASHED


def code_text(path: Path) -> str:
    """What a Python file runs: its syntax tree without docstrings (comments are not in it),
    so editing a comment or a docstring does not make every record stale."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.cache  # once per process: the code it imported does not change under it
def code_hash(*modules: str) -> str:
    """sha256 over what the import closures of `modules` run (paths sorted, `code_text`)."""
    digest = hashlib.sha256()
    for path in sorted(set().union(*(module_files(m) for m in modules))):
        digest.update(str(path).encode() + b"\0" + code_text(ROOT / path).encode() + b"\0")
    return digest.hexdigest()[:16]


LOCAL_KEYS = {"root", "split_file", "path"}  # a prepared set's manifest: where this clone found its inputs


def _without_local(value: Any) -> Any:
    """A manifest value without its LOCAL_KEYS, at any depth."""
    if isinstance(value, dict):
        return {k: _without_local(v) for k, v in value.items() if k not in LOCAL_KEYS}
    if isinstance(value, list):
        return [_without_local(v) for v in value]
    return value


def folder_hash(folder: Path) -> str:
    """sha256 over a prepared set's files (relative names and contents), its manifest without
    machine-local paths: the same images and masks prepared in another clone or on another
    machine keep their hash (records made before f374eba hashed those paths, so they went
    stale in any clone of another name)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name, content = path.relative_to(folder), path.read_bytes()
        if name == Path("manifest.json"):
            content = json.dumps(_without_local(json.loads(content)), sort_keys=True).encode()
        digest.update(str(name).encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def weights_hash(model_folder: Path) -> str:
    """sha256 over a saved model's tensors (names, shapes and bytes; not the file's framing)."""
    state = torch.load(model_folder / WEIGHTS, map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_bench_config(path: Path, bench_cfg: type[Strict], used: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """A benchmark preset: its `bench` section (validated by `bench_cfg`) and the validated
    pipeline sections `used`, by name."""
    params = load_params(path)
    bench = parse_section(params, "bench", bench_cfg, str(path))
    return bench, {name: parse_section(params, name, SECTIONS[name], str(path)) for name in used}


def config_hash(config: Any) -> str:
    """sha256 of a JSON-able config (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def environment() -> dict[str, Any]:
    """The git commit (and whether the tree had changes), the package versions, and the
    machine: its CPU fingerprint and torch's thread count (the same inputs gave other
    weights on another CPU, so a comparison must not mix machines within a seed)."""
    import torch

    from pipeline.machine import fingerprint

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "versions": versions, "machine": {**fingerprint(), "torch_threads": torch.get_num_threads()}}


class RecordStore:
    """Records as JSON files under `folder`, named by the run; `current(name, inputs)` is the
    stored record when its inputs are `inputs`, else None (it is then re-run)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        return json.loads(path.read_text()) if path.exists() else None

    def current(self, name: str, inputs: dict[str, str]) -> dict[str, Any] | None:
        record = self.load(name)
        return record if record is not None and record.get("inputs") == inputs else None

    def save(self, name: str, inputs: dict[str, str], record: dict[str, Any]) -> dict[str, Any]:
        record = {"name": name, "inputs": inputs, **environment(), **record}
        write_json(record, self.path(name))
        return record
