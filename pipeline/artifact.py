"""Model folders: model.json (the typed model card) and model.pt (a tensors-only
state_dict), written atomically, loaded without unpickling code.

One loader serves dense and pruned models: a card with `pruned_channels` rebuilds the
dense network from its description, removes the same channels with Torch-Pruning's
dependency graph, then loads the tensors (weights_only=True).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError
from torch import nn

from pipeline.card import ModelCard
from pipeline.errors import PipelineError, one_line
from pipeline.models import create_model

if TYPE_CHECKING:
    import torch_pruning as tp

WEIGHTS, META = "model.pt", "model.json"
TRACE_SIZE = 64  # any input size the architecture accepts: channel counts do not depend on it


def write_json(data: Any, path: Path) -> None:
    """Write JSON via a temporary file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def save_model(model: nn.Module, folder: Path, card: ModelCard | dict[str, Any]) -> None:
    """Write folder/model.pt and folder/model.json (a card, or a dict validated as one), each
    via a temporary file + rename."""
    card = card if isinstance(card, ModelCard) else ModelCard.model_validate(card)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{WEIGHTS}.tmp"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, folder / WEIGHTS)
    write_json(card.to_json(), folder / META)


def load_card(folder: Path) -> ModelCard:
    """Read and validate folder/model.json."""
    try:
        return ModelCard.model_validate(json.loads((folder / META).read_text()))
    except (OSError, ValueError) as err:  # ValidationError is a ValueError
        problem = _first_error(err) if isinstance(err, ValidationError) else one_line(err)
        raise PipelineError(f"{folder / META}: cannot read model description ({problem})") from None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'model.json'}: {first['msg']} ({err.error_count()} errors)"


def load_model(folder: Path) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model folder/model.json describes (pruned or not) and load its weights."""
    card = load_card(folder)
    model = create_model(card.model, card.num_classes)
    if card.pruned_channels:
        try:
            remove_channels(model, card.pruned_channels)
        except (AttributeError, ValueError, IndexError) as err:
            raise PipelineError(f"{folder / META}: pruned_channels do not fit {card.model.arch}-"
                                f"{card.model.encoder} ({one_line(err)})") from None
        model.train()  # tracing left it in eval mode; hand it back as create_model does
    load_weights(model, folder)
    return model, card


def remove_channels(model: nn.Module, removed: dict[str, list[int]], dg: tp.DependencyGraph | None = None
                    ) -> nn.Module:
    """Remove channels `removed[root]` of each dependency group, named by its root conv, with
    Torch-Pruning (`get_pruning_group(...).prune()`): every coupled layer shrinks with them."""
    import torch_pruning as tp  # only pruned models need it

    if dg is None:
        example = torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE)
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    for name, drop in removed.items():
        root = model.get_submodule(name)
        dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, drop).prune()
    return model


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load folder/model.pt into `model`: tensors only (weights_only=True), shapes must match."""
    try:
        model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:  # corrupt or unsafe
        raise PipelineError(f"{folder / WEIGHTS}: cannot load weights ({one_line(err)})") from None
