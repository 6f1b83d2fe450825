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
    if tail := cfg.tail_options():
        set_tail(model, cfg.arch, **tail)
    if cfg.encoder_weights:
        load_encoder_weights(model, Path(cfg.encoder_weights))
    return model


class _Skip(nn.Module):
    """A dropped decoder block: passes its input through."""

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return x


def set_tail(model: nn.Module, arch: str, head_kernel_size: int = 3, head_upsampling: int = 1) -> None:
    """The full-resolution tail smp fixes: the head conv's kernel (smp: 3x3; a 1x1 head costs
    a ninth at full resolution) and, with `head_upsampling` 2 (Unet only), the last decoder
    block dropped and the head predicting at half resolution, upsampled bilinearly: the two
    full-resolution convs are the largest cost pruning cannot reach. Changed layers start fresh."""
    if head_kernel_size < 1 or head_kernel_size % 2 == 0:
        raise PipelineError(f"model.decoder.{arch}.head_kernel_size: {head_kernel_size} must be an odd number >= 1")
    if head_upsampling not in (1, 2) or (head_upsampling == 2 and arch.lower() != "unet"):
        raise PipelineError(f"model.decoder.{arch}.head_upsampling: {head_upsampling}; 1, or 2 for Unet only")
    head = model.segmentation_head[0]
    channels = head.in_channels
    if head_upsampling == 2:
        model.decoder.blocks[-1] = _Skip()
        channels = model.decoder.blocks[-2].conv2[0].out_channels
    model.segmentation_head = smp.base.SegmentationHead(channels, head.out_channels, head_kernel_size,
                                                        upsampling=head_upsampling)


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
