"""params.yaml: the shipped params and presets are valid; presets merge. Misspelt keys,
wrong types, unreadable files: tests/reliability/test_bad_config.py."""

from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.params import load_params, validate_params
from pipeline.preset import apply_preset, merge
from tests.conftest import ROOT


def test_shipped_params_and_presets_are_valid():
    params = load_params(ROOT / "params.yaml")
    validate_params(params)
    presets = sorted((ROOT / "configs").glob("*.yaml"))
    assert {p.name for p in presets} >= {"tiny.yaml", "full.yaml", "pldu.yaml"}
    for preset in presets:
        validate_params(merge(params, load_params(preset)), str(preset))


def test_preset_merges_and_bad_preset_leaves_params_untouched(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    good = tmp_path / "good.yaml"
    good.write_text("train: {epochs: 2}\nmodel: {arch: FPN}\n")
    merged = apply_preset(good, params)
    assert merged["train"]["epochs"] == 2 and merged["train"]["batch_size"] == 8
    assert yaml.safe_load(params.read_text())["model"] == {**merged["model"], "arch": "FPN"}
    before = params.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: -1}\n")
    with pytest.raises(PipelineError, match="train.epochs"):
        apply_preset(bad, params)
    assert params.read_text() == before
