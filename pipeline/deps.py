"""The code dependencies of each dvc.yaml stage, computed from what the stage imports.

    python -m pipeline.deps           # print each stage's code deps
    python -m pipeline.deps --write   # rewrite them in dvc.yaml (comments and order kept)

A stage's code is the import closure of `python -m pipeline.stages.<stage>` over the
project's own files: every project module it imports, at the top or lazily inside a
function (the bytecode is scanned, so imports under `if TYPE_CHECKING:` count too: a
harmless over-approximation), plus project modules named in string literals (a lazy
registry's "pipeline.x.y", a `python -m pipeline.memory` subprocess). A folder is listed
instead of its files when every file in it is in the closure. Run `--write` after moving
or adding imports; tests/test_deps.py fails until dvc.yaml matches.

The method registry (pipeline/pruning/registry.py) is the exception: every stage loads it
(the config checks method names with it), but only a stage that turns a name into its class
loads the "module:Class" modules it lists. Its strings are followed for METHOD_STAGES only,
so editing a method's own module re-runs the prune stages alone. Adding a method still edits
registry.py, which every stage lists, so that re-runs the whole pipeline once.
"""

from __future__ import annotations

import argparse
import re
import types
from modulefinder import ModuleFinder
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"
STAGE_COMMAND = re.compile(r"python -m (pipeline\.stages\.\w+)")
MODULE_NAME = re.compile(r"^(pipeline(?:\.\w+)+)(?::\w+)?$")  # "pipeline.x.y" or "pipeline.x.y:Name"
REGISTRY = "pipeline.pruning.registry"
# The stages that import method classes by their registry names: prune (run.prune creates its
# method; parsing the `prune` section checks each method block with the method's Options
# class). The others read at most the names (SweepCfg), never a method module the registry
# names. tests/test_deps.py checks this by running each stage's imports and params parsing.
METHOD_STAGES = frozenset({"pipeline.stages.prune"})


def _strings(code: types.CodeType) -> set[str]:
    """Every string constant of a code object and of the functions and classes inside it."""
    found = set()
    for const in code.co_consts:
        if isinstance(const, str):
            found.add(const)
        elif isinstance(const, types.CodeType):
            found |= _strings(const)
    return found


def import_closure(module: str, root: Path = ROOT, methods: bool | None = None) -> set[Path]:
    """The project files (relative to `root`) that importing and running `module` can load;
    `methods`: follow the method registry's "module:Class" strings (default: for METHOD_STAGES)."""
    methods = module in METHOD_STAGES if methods is None else methods
    finder = ModuleFinder(path=[str(root)])  # only the project: third-party and stdlib stay unscanned
    pending, seen = [module], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        finder.import_hook(name)
        for loaded_name, loaded in list(finder.modules.items()):
            if loaded.__code__ is None or (loaded_name == REGISTRY and not methods):
                continue
            for text in _strings(loaded.__code__):
                match = MODULE_NAME.match(text)
                if match and match.group(1) not in seen and _is_module(match.group(1), root):
                    pending.append(match.group(1))
    files = {Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__}
    return {path.relative_to(root) for path in files if path.is_relative_to(root)}


def _is_module(name: str, root: Path) -> bool:
    """Whether a dotted name is a project module or package (not an attribute path)."""
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _code_files(folder: Path, root: Path) -> set[Path]:
    """The files of a package folder that a stage could depend on (DVC ignores caches)."""
    return {p.relative_to(root) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def compact(files: set[Path], root: Path = ROOT) -> list[str]:
    """Sorted deps covering exactly `files`: a folder whose every file is in `files` replaces them."""
    folders = {parent for f in files for parent in f.parents if parent != Path(".")}
    whole = {d for d in folders if _code_files(root / d, root) <= files}
    top = {d for d in whole if not any(parent in whole for parent in d.parents)}
    loose = {f for f in files if not any(d in f.parents for d in top)}
    return sorted(p.as_posix() for p in top | loose)


def stage_modules(dvc_yaml: Path) -> dict[str, str]:
    """{stage name: the module its cmd runs} for every stage that runs `python -m pipeline.stages.X`."""
    stages = YAML(typ="safe").load(dvc_yaml.read_text())["stages"]
    found = {}
    for name, stage in stages.items():
        match = STAGE_COMMAND.search(" ".join(stage["cmd"]) if isinstance(stage["cmd"], list) else stage["cmd"])
        if match:
            found[name] = match.group(1)
    return found


def is_code_dep(dep: str) -> bool:
    """Whether a dvc.yaml dep is project code (rewritten by --write) rather than data or a model."""
    return dep == PACKAGE or dep.startswith(PACKAGE + "/")


def covered(path: Path, deps: list[str]) -> bool:
    """Whether a dep names the file or a folder it lies in."""
    return any(Path(dep) == path or Path(dep) in path.parents for dep in deps)


def expected_deps(root: Path = ROOT) -> dict[str, list[str]]:
    """{stage name: its code deps} as --write would put them in dvc.yaml."""
    return {stage: compact(import_closure(module, root), root)
            for stage, module in stage_modules(root / "dvc.yaml").items()}


def write_deps(root: Path = ROOT) -> list[str]:
    """Rewrite each stage's code deps in dvc.yaml (other deps first, kept in order); the changed stages."""
    yaml = YAML()  # round trip: comments, order and block styles survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the folded cmd lines
    yaml.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's style: "- item" indented under its key
    path = root / "dvc.yaml"
    document = yaml.load(path.read_text())
    changed = []
    for stage, code in expected_deps(root).items():
        deps = document["stages"][stage].setdefault("deps", [])
        updated = [dep for dep in deps if not (isinstance(dep, str) and is_code_dep(dep))] + code
        if list(deps) != updated:
            deps[:] = updated
            changed.append(stage)
    if changed:
        with path.open("w") as f:
            yaml.dump(document, f)
    return changed


def main(argv: list[str] | None = None) -> None:
    """Print each stage's code deps, or rewrite them in dvc.yaml with --write."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    args = p.parse_args(argv)
    if args.write:
        changed = write_deps()
        print(f"dvc.yaml: code deps rewritten for {', '.join(changed)}" if changed else "dvc.yaml: up to date")
        return
    for stage, deps in expected_deps().items():
        print(f"{stage}:", *(f"  - {dep}" for dep in deps), sep="\n")


if __name__ == "__main__":
    main()
