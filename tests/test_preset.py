"""Presets change only the values they set: params.yaml keeps its comments and layout, and
the undo file a preset writes gives back the file byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.params import load_params
from pipeline.preset import apply_preset, main, merge
from tests.conftest import ROOT

PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def comments(text: str) -> list[str]:
    """The comments of a YAML text, in order, but those on list items (a replaced list
    takes its items' comments with it); params.yaml has no '#' inside a value."""
    return [line.split("#", 1)[1] for line in text.splitlines() if "#" in line and not line.strip().startswith("-")]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.name)
def test_a_preset_keeps_the_comments_and_its_undo_gives_back_the_bytes(tmp_path: Path, preset: Path):
    original = (ROOT / "params.yaml").read_bytes()
    params, undo = tmp_path / "params.yaml", tmp_path / "undo.yaml"
    params.write_bytes(original)
    merged = apply_preset(preset, params, undo)
    applied = params.read_text()
    assert merged == merge(load_params(ROOT / "params.yaml"), load_params(preset)) == yaml.safe_load(applied)
    assert applied.encode() != original
    assert comments(applied) == comments(original.decode())  # every line and key comment, in order
    apply_preset(undo, params, tmp_path / "redo.yaml")
    assert params.read_bytes() == original
    apply_preset(tmp_path / "redo.yaml", params)  # and the undo of the undo is the preset again
    assert params.read_text() == applied


def test_the_command_line_round_trip(tmp_path: Path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    main([str(ROOT / "configs" / "tiny.yaml"), "--params", str(params), "--undo", str(tmp_path / "back.yaml")])
    assert "the way back" in capsys.readouterr().out
    assert "enable_progress_bar: !unset" in (tmp_path / "back.yaml").read_text()  # tiny adds this key
    main([str(tmp_path / "back.yaml"), "--params", str(params)])
    assert params.read_text() == (ROOT / "params.yaml").read_text()


def test_a_preset_with_a_python_tag_is_refused_naming_it(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: !!python/name:os.system ''}\n")
    with pytest.raises(PipelineError, match=r"bad\.yaml: cannot read preset"):
        apply_preset(bad, params)
    assert params.read_text() == (ROOT / "params.yaml").read_text()
