"""Model artifacts: a JSON description plus a tensors-only state_dict (no pickled code)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import ModelCfg
from pipeline.errors import PipelineError, one_line
from pipeline.models import NORMALISATION, create_model

WEIGHTS, META = "model.pt", "model.json"


def save_model(model: nn.Module, folder: Path, meta: dict[str, Any]) -> None:
    """Write folder/model.pt and folder/model.json, each via a temporary file + rename."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"normalisation": NORMALISATION, **meta}
    tmp = folder / f".{WEIGHTS}.tmp"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, folder / WEIGHTS)
    tmp = folder / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / META)


def load_meta(folder: Path) -> dict[str, Any]:
    """Read folder/model.json."""
    try:
        return json.loads((folder / META).read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder / META}: cannot read model description ({err})") from None


def load_model(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from model.json and load model.pt with weights_only=True."""
    meta = load_meta(folder)
    model = create_model(ModelCfg.model_validate(meta["model"]), meta.get("num_classes", 2))
    load_weights(model, folder)
    return model, meta


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load folder/model.pt into `model`: tensors only (weights_only=True), shapes must match."""
    try:
        model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:  # corrupt or unsafe
        raise PipelineError(f"{folder / WEIGHTS}: cannot load weights ({one_line(err)})") from None
