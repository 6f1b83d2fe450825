"""create_model(): smp models from config, with encoder weights from a local file only."""

from __future__ import annotations

import pickle
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from pipeline.card import NORMALISATION
from pipeline.config import ModelCfg
from pipeline.errors import PipelineError, one_line

__all__ = ["NORMALISATION", "create_model", "load_encoder_weights", "output_channels"]



def output_channels(num_classes: int) -> int:
    """Binary problems use one sigmoid logit; with towers, one softmax logit per class."""
    return 1 if num_classes == 2 else num_classes


def create_model(cfg: ModelCfg, num_classes: int = 2) -> nn.Module:
    """Build the smp model `cfg` names; bad names fail listing the valid ones."""
    arch = cfg.arch.lower()
    if arch not in smp.MODEL_ARCHITECTURES_MAPPING:
        valid = ", ".join(cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values())
        raise PipelineError(f"model.arch: unknown architecture {cfg.arch!r}; valid: {valid}")
    if cfg.encoder not in smp.encoders.get_encoder_names() and not cfg.encoder.startswith("tu-"):
        valid = ", ".join(smp.encoders.get_encoder_names())
        raise PipelineError(f"model.encoder: unknown encoder {cfg.encoder!r}; valid: {valid}, or tu-<timm name>")
    try:
        model = smp.create_model(
            arch,
            encoder_name=cfg.encoder,
            encoder_weights=None,  # never download: weights come from a local file below
            encoder_depth=cfg.encoder_depth,
            classes=output_channels(num_classes),
            **cfg.decoder_options(),
        )
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        options = cfg.decoder_options()
        raise PipelineError(f"model: cannot build {cfg.arch}-{cfg.encoder} with {options}: {err}") from None
    if cfg.encoder_weights:
        load_encoder_weights(model, Path(cfg.encoder_weights))
    return model


def load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load a local encoder state_dict (safe loading: tensors only, no pickled code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:  # corrupt or unsafe
        raise PipelineError(f"{path}: cannot load encoder weights ({one_line(err)})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    # nn.Module's own method: some smp encoders override it and return nothing
    missing, unexpected = nn.Module.load_state_dict(model.encoder, state, strict=False)
    if len(missing) == len(model.encoder.state_dict()):
        raise PipelineError(f"{path}: no tensor matches encoder {type(model.encoder).__name__}")
    if unexpected and not all(k.startswith("fc.") for k in unexpected):  # classifier heads are fine
        raise PipelineError(f"{path}: unexpected keys for this encoder, e.g. {unexpected[:3]}")
