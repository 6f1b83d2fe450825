"""Shared fixtures: tiny CPU configs, a tiny prepared data set, the real-data location."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import BaseCfg, PrepareCfg
from pipeline.data.prepare import prepare
from pipeline.preset import merge

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def tiny_params() -> dict:
    """params.yaml with configs/tiny.yaml applied: 64 px images, narrow model, 1 epoch."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merge(params, yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text()))


@pytest.fixture(scope="session")
def params() -> dict:
    return tiny_params()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, params) -> Path:
    """A prepared synthetic data set of 16 images of 64x64."""
    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare(PrepareCfg.model_validate(params["prepare"]), BaseCfg.model_validate(params["base"]), out)
    return out


def require_shared(*parts: str) -> Path:
    """The path under ../shared/datasets, or skip: users' machines have no ../shared."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (it lives beside the project, in ../shared)")
    return path
