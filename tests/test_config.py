"""params.yaml schema: typos and wrong types fail with the valid keys; presets merge."""

from pathlib import Path

import pytest
import yaml

from pipeline.config import PrepareCfg, TrainCfg, load_params, parse_section, validate_params
from pipeline.errors import PipelineError
from pipeline.preset import apply_preset, merge
from tests.conftest import ROOT


def test_shipped_params_and_presets_are_valid():
    params = load_params(ROOT / "params.yaml")
    validate_params(params)
    presets = sorted((ROOT / "configs").glob("*.yaml"))
    assert {p.name for p in presets} >= {"tiny.yaml", "full.yaml", "pldu.yaml"}
    for preset in presets:
        validate_params(merge(params, load_params(preset)), str(preset))


def test_misspelt_key_names_it_and_lists_valid_keys():
    with pytest.raises(PipelineError, match=r"train\.epochz.*valid keys: epochs, batch_size"):
        parse_section({"train": {"epochz": 3}}, "train", TrainCfg)


def test_nested_misspelt_key_lists_the_nested_keys():
    with pytest.raises(PipelineError, match=r"prepare\.synthetic\.n_trian.*valid keys: n_train"):
        parse_section({"prepare": {"synthetic": {"n_trian": 3}}}, "prepare", PrepareCfg)


def test_wrong_type_is_refused():
    with pytest.raises(PipelineError, match=r"train\.epochs"):
        parse_section({"train": {"epochs": "many"}}, "train", TrainCfg)


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(PipelineError, match="synthetic.*pld-uav"):
        parse_section({"prepare": {"source": "pldu"}}, "prepare", PrepareCfg)


def test_valid_section_is_accepted():
    cfg = parse_section({"train": {"epochs": 3}}, "train", TrainCfg)
    assert cfg.epochs == 3 and cfg.batch_size == TrainCfg().batch_size


def test_unknown_section_is_refused():
    with pytest.raises(PipelineError, match="unknown section"):
        validate_params({"trian": {}})


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
