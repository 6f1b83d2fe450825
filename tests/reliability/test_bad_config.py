"""Bad params.yaml: misspelt keys and sections, wrong types, unknown choices, unreadable
files. Each is a PipelineError on one line naming the file, the key path and the problem
(a misspelling also gets the closest valid key); each has a positive control."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PrepareCfg, TrainCfg
from pipeline.errors import PipelineError
from pipeline.params import load_params, load_sections, parse_section, validate_params
from tests.builders import refused
from tests.conftest import ROOT


def params_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, problem", [
    ("train:\n  epocs: 3\n", r"params\.yaml: train\.epocs: unknown key; did you mean 'epochs'\? "
                             r"\(valid keys: epochs, batch_size, "),
    ("prepare:\n  synthetic: {n_trian: 3}\n", r"prepare\.synthetic\.n_trian: unknown key; did you mean 'n_train'\? "
                                              r"\(valid keys: n_train, n_val, n_test, height, width, renderer, "
                                              r"backgrounds\)$"),
    ("trian:\n  epochs: 3\n", r"params\.yaml: unknown section 'trian'; did you mean 'train'\? "
                              r"\(valid sections: base, "),
    ("train:\n  zzz: 3\n", r"train\.zzz: unknown key \(valid keys: epochs"),  # nothing close: no guess
])
def test_a_misspelt_key_names_file_path_and_closest_valid_key(tmp_path, text, problem):
    assert load_sections(params_file(tmp_path, "train:\n  epochs: 3\n"), "train", "prepare")[0].epochs == 3
    refused(lambda: load_sections(params_file(tmp_path, text), "train", "prepare"), "params.yaml", problem,
            PipelineError)


def test_a_misspelt_section_fails_even_in_a_stage_that_does_not_read_it(tmp_path):
    # before, `trian:` was silently ignored and `train` kept its defaults
    refused(lambda: load_sections(params_file(tmp_path, "trian: {epochs: 3}\n"), "base"), "params.yaml",
            "unknown section 'trian'", PipelineError)


@pytest.mark.parametrize("text, problem", [
    ("train:\n  epochs: ten\n", r"train\.epochs: Input should be a valid integer, unable to parse string as an "
                                r"integer, got 'ten'$"),
    ("train:\n  epochs: 0\n", r"train\.epochs: Input should be greater than or equal to 1, got 0$"),
    ("train:\n  lr: [1]\n", r"train\.lr: Input should be a valid number, got \[1\]$"),
    ("train: 5\n", r"train: Input should be a valid dictionary or instance of TrainCfg, got 5$"),
    ("prepare:\n  source: pldu\n", r"prepare\.source: Input should be 'synthetic', 'pld-uav', 'ttpla', 'folder' or "
                                   r"'geotiff', got 'pldu'$"),
    ("prepare:\n  skip_bad: maybe\n", r"prepare\.skip_bad: Input should be a valid boolean"),
])
def test_a_wrong_type_or_value_names_file_key_and_value(tmp_path, text, problem):
    refused(lambda: load_sections(params_file(tmp_path, text), "train", "prepare"), "params.yaml", problem,
            PipelineError)


@pytest.mark.parametrize("text, problem", [
    ("train:\n  epochs: 3\n  epochs: 4\n", r"cannot read params \(duplicate key 'epochs'"),
    ("train: {epochs: 3\n", r"cannot read params \(while parsing a flow mapping"),
    ("[1]: 2\n", r"cannot read params \(a key must be a plain value, got a list"),
    ("- 1\n- 2\n", "expected a mapping of sections"),
    pytest.param("[" * 3000, r"cannot read params \(maximum recursion depth exceeded", id="deeply-nested"),
])
def test_an_unreadable_params_file_is_one_line(tmp_path, text, problem):
    refused(lambda: load_sections(params_file(tmp_path, text), "train"), "params.yaml", problem, PipelineError)


def test_non_utf8_params_are_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"train:\n  epochs: \xff\xfe\n")
    refused(lambda: load_sections(path, "train"), "params.yaml", "cannot read params", PipelineError)


def test_valid_sections_are_accepted():
    cfg = parse_section({"train": {"epochs": 3}}, "train", TrainCfg)
    assert cfg.epochs == 3 and cfg.batch_size == TrainCfg().batch_size
    assert parse_section({"prepare": {"synthetic": {"n_train": 3}}}, "prepare", PrepareCfg).synthetic.n_train == 3


def test_validate_params_refuses_unknown_sections():
    params = load_params(ROOT / "params.yaml")
    validate_params(params)  # positive control: the shipped params
    with pytest.raises(PipelineError, match="unknown section 'trian'; did you mean 'train'"):
        validate_params({**params, "trian": {}})
