"""Apply a named preset (configs/*.yaml) to params.yaml, so `dvc repro` and
`dvc exp show` see the change like any other parameter edit.

    python -m pipeline.preset configs/pldu.yaml --undo undo.yaml
    python -m pipeline.preset undo.yaml      # params.yaml back, byte for byte

params.yaml is rewritten with a round-trip YAML writer: its comments, key order and layout
stay, only the values the preset sets change. `--undo FILE` also writes the way back: a
preset of the values this one replaced, with `!unset` for the keys it added (a key removed
by `!unset` and put back again returns at the end of its section).
"""

from __future__ import annotations

import argparse
import copy
import io
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, TaggedScalar
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RoundTripError
from ruamel.yaml.tokens import CommentToken

from pipeline.cli import run
from pipeline.errors import PipelineError, one_line
from pipeline.params import UniqueKeyLoader, load_params, validate_params

UNSET_TAG = "!unset"  # in a preset: remove this key (what an undo file says of keys a preset added)
UNSET = object()  # how the safe loader reads `!unset`


class PresetLoader(UniqueKeyLoader):
    """The params loader (safe, no duplicate keys) that also reads `!unset`."""


PresetLoader.add_constructor(UNSET_TAG, lambda loader, node: UNSET)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`; lists and scalars are replaced whole,
    keys set to UNSET removed."""
    merged = dict(base)
    for key, value in override.items():
        if value is UNSET:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_preset(path: Path) -> dict[str, Any]:
    """Read a preset safely (no tags but `!unset`, no duplicate keys); one-line errors."""
    try:
        with Path(path).open("rb") as f:
            preset = yaml.load(f, Loader=PresetLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError, RecursionError) as err:
        raise PipelineError(f"{path}: cannot read preset ({one_line(err, 300)})") from None
    if not isinstance(preset, dict):
        raise PipelineError(f"{path}: expected a mapping of sections")
    return preset


def round_trip_yaml() -> YAML:
    """ruamel.yaml in round-trip mode, set to the project's layout (2-space mappings, list
    items indented by 2, `null` spelt out, no line wrapping), so an unchanged file is
    written back byte for byte."""
    rt = YAML()
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 1_000_000
    rt.preserve_quotes = True
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _load_round_trip(rt: YAML, path: Path) -> CommentedMap:
    try:
        return rt.load(Path(path).read_text(encoding="utf-8")) or CommentedMap()
    except (OSError, ValueError, RoundTripError) as err:  # checked by the safe loader first: rare
        raise PipelineError(f"{path}: cannot read ({one_line(err, 300)})") from None


def _dump(rt: YAML, doc: CommentedMap) -> str:
    out = io.StringIO()
    rt.dump(doc, out)
    return out.getvalue()


def _is_unset(value: Any) -> bool:
    return isinstance(value, TaggedScalar) and str(value.tag.value) == UNSET_TAG


def _keep_layout(old: Any, new: Any) -> None:
    """A list or mapping that replaces one of its kind takes its layout (block or flow) and
    the comments around it (the lines after a block list belong to the next key), unless
    it brings its own."""
    if not (isinstance(old, CommentedBase) and type(new) is type(old)):
        return
    if old.fa.flow_style():
        new.fa.set_flow_style()
    else:
        new.fa.set_block_style()
    new.ca.comment = new.ca.comment or old.ca.comment
    new.ca.end = new.ca.end or old.ca.end


def _eol_comment(mapping: CommentedMap, key: Any) -> CommentToken | None:
    entry = mapping.ca.items.get(key)
    return entry[2] if entry and len(entry) > 2 else None


def _note_comment(target: CommentedMap, overrides: CommentedMap, key: Any, undo: CommentedMap) -> None:
    """params.yaml keeps its comment on `key` (a preset's is not copied); `undo` gets a copy
    of it, and a comment of the same text in the preset (an undo file's) sets its column:
    a longer value pushed it right, the way back puts it where it was."""
    mine, theirs = _eol_comment(target, key), _eol_comment(overrides, key)
    if mine is None:
        return
    undo.ca.items[key] = copy.deepcopy(target.ca.items[key])
    if theirs is not None and theirs.value == mine.value:
        mine.column = theirs.column


def _move_tail(mapping: CommentedMap, src: Any, dst: Any) -> None:
    """Move the lines after `src`'s own line (the blank line and comments before the next
    section) to `dst`, so a key added at the end of a section stays in the section."""
    token = _eol_comment(mapping, src)
    if token is None or mapping.fa.flow_style():
        return
    head, newline, tail = token.value.partition("\n")
    if not tail:
        return
    token.value = head + newline
    if _eol_comment(mapping, dst) is None:
        mapping.ca.items[dst] = [None, None, CommentToken("\n" + tail, CommentMark(0), None), None]
    else:
        mapping.ca.items[dst][2].value += tail


def overlay(target: CommentedMap, overrides: CommentedMap, undo: CommentedMap) -> None:
    """Deep-merge `overrides` into `target` in place, as `merge` does, keeping comments;
    record in `undo` what was there before (an `!unset` tag for keys that were not)."""
    for key, value in overrides.items():
        old = target.get(key)
        if _is_unset(value):
            if key in target:
                keys = list(target)
                undo[key] = old
                _note_comment(target, overrides, key, undo)
                if keys.index(key) > 0:  # the lines after it now follow the key before it
                    _move_tail(target, key, keys[keys.index(key) - 1])
                del target[key]
        elif isinstance(value, dict) and isinstance(old, dict):
            undo[key] = CommentedMap()
            overlay(old, value, undo[key])
        else:
            undo[key] = old if key in target else TaggedScalar(value="", tag=UNSET_TAG)
            _note_comment(target, overrides, key, undo)
            _keep_layout(old, value)
            if key not in target and target:
                _move_tail(target, list(target)[-1], key)
            target[key] = value


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def apply_preset(preset: Path, params: Path, undo: Path | None = None) -> dict[str, Any]:
    """Merge `preset` into `params`, validate the result, and only then write it (and, if
    given, `undo`: the preset that puts `params` back). Returns the merged params."""
    read_preset(preset)  # safe-load check first: a clear error naming the preset
    load_params(params)
    rt = round_trip_yaml()
    doc = _load_round_trip(rt, params)
    way_back = CommentedMap()
    overlay(doc, _load_round_trip(rt, preset), way_back)
    text = _dump(rt, doc)
    merged = yaml.load(text, Loader=UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader subclass
    validate_params(merged, f"{params} + {preset}")
    if undo is not None:
        _write(undo, _dump(rt, way_back))
    _write(params, text)
    return merged


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m pipeline.preset PRESET [--params params.yaml] [--undo FILE]."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", type=Path, help="a YAML file of overrides, e.g. configs/pldu.yaml")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--undo", type=Path, help="also write the preset that puts params back as they were")
    args = p.parse_args(argv)
    run(lambda: apply_preset(args.preset, args.params, args.undo))
    print(f"{args.params}: applied {args.preset}" + (f" (the way back: {args.undo})" if args.undo else ""))


if __name__ == "__main__":
    main()
