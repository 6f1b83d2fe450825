"""Torch-Pruning's sparse-training regularisers as Lightning callbacks: network slimming
(`tp.pruner.BNScalePruner`: L1 on BatchNorm γ) and DepGraph's group lasso
(`tp.pruner.GroupNormPruner`, not the pruner for nn.GroupNorm). Torch-Pruning's recipe: after
backward, before `optimizer.step()`, call `pruner.regularize(model)`, which adds the
regulariser's gradient to the weights' `.grad`.

Two things the project's models need:

* the pruners trace the model for their own dependency graph, and the hooks of trainable
  feature templates (templates.py) hide the groups from that trace (a tiny Unet: 1 group of
  22), so the pruner is built with the templates paused (`Templates.paused`);
* `GroupNormPruner.regularize` indexes the weights with Python lists and tests its scores for
  NaN with an `if`: on a GPU, several host-device syncs per group per step.
  `GroupLassoPruner.regularize` computes the same gradient (tested equal) from index tensors
  kept on the weights' device. `BNScalePruner.regularize` (plain L1) needs no such help.
"""

from __future__ import annotations

import lightning as L
import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch_pruning.pruner import function

from pipeline.pruning.templates import Templates

TRACE_SIZE = 64  # the pruner's tracing image: any size the model accepts gives the same groups

_OUT = (function.prune_conv_out_channels, function.prune_linear_out_channels)
_IN = (function.prune_conv_in_channels, function.prune_linear_in_channels)
_NORM = (function.prune_batchnorm_out_channels, function.prune_layernorm_out_channels)


class GroupLassoPruner(tp.pruner.GroupNormPruner):
    """`GroupNormPruner` whose `regularize` adds the same gradient without host-device syncs.

    Per group: imp = sqrt of the summed squared weights of each root channel over the group's
    convs, linears and norms (GroupMagnitudeImportance(p=2); its mean reduction and
    normalisation cancel below), γ = α^((max imp − imp)/(max imp − min imp)), and every
    conv/linear (out or in channels) and BatchNorm weight of the group gets reg·γ·w added
    to its gradient. As in Torch-Pruning: no channel groups, biases not regularised; convs
    that are grouped but not depthwise, and transposed convs, are left out (Torch-Pruning's
    own `regularize` mis-indexes them). A group whose scores are all equal gets γ = 1
    (Torch-Pruning's 0/0 would give NaN)."""

    _terms: list[tuple[int, list[tuple[nn.Module, str, Tensor, Tensor]]]] | None = None

    def _group_terms(self, device: torch.device) -> list[tuple[int, list[tuple[nn.Module, str, Tensor, Tensor]]]]:
        """Per group: (channels, [(layer, "out"/"in"/"norm", channel indices, root indices)]),
        index tensors on `device`; built once (and again if the model moved)."""
        if self._terms is None or (self._terms and self._terms[0][1][0][2].device != device):
            self._terms = []
            for group in self._groups:
                terms = [(item.dep.target.module, kind, torch.tensor(item.idxs, device=device),
                          torch.tensor(item.root_idxs, device=device))
                         for item in group if (kind := _kind(item.dep)) and None not in item.root_idxs]
                if terms:
                    self._terms.append((len(group[0].idxs), terms))
        return self._terms

    @torch.no_grad()
    def regularize(self, model: nn.Module, alpha: float = 2**4, bias: bool = False) -> None:
        """Add the group-lasso gradient reg·γ·w (Torch-Pruning's default α = 2⁴)."""
        device = next(model.parameters()).device
        for size, terms in self._group_terms(device):
            imp = torch.zeros(size, device=device)
            for layer, kind, idx, root in terms:
                imp.index_add_(0, root, _squared_norms(layer, kind, idx))
            imp = imp.sqrt()
            gamma = alpha ** ((imp.max() - imp) / (imp.max() - imp.min())).nan_to_num(0.0)
            for layer, kind, idx, root in terms:
                if layer.weight.grad is None or isinstance(layer, nn.LayerNorm):  # TP scores LN, never pulls it
                    continue
                dim = 1 if kind == "in" else 0
                shape = [1] * layer.weight.dim()
                shape[dim] = -1
                step = layer.weight.index_select(dim, idx) * gamma[root].view(shape)
                layer.weight.grad.index_add_(dim, idx, self.reg * step)


def _kind(dep: tp.Dependency) -> str | None:
    """What part of the layer a group item prunes, as Torch-Pruning's regulariser sees it."""
    layer, handler = dep.target.module, dep.handler
    if getattr(layer, "transposed", False) or getattr(layer, "weight", None) is None:
        return None
    if handler in _OUT:
        return "out"
    if handler in _IN:
        return "in" if getattr(layer, "groups", 1) == 1 else None
    return "norm" if handler in _NORM else None


def _squared_norms(layer: nn.Module, kind: str, idx: Tensor) -> Tensor:
    """Per channel in `idx`, the squared L2 norm of the layer's weights for that channel."""
    w = layer.weight.index_select(1 if kind == "in" else 0, idx)
    w = w.transpose(0, 1) if kind == "in" else w
    return w.flatten(1).pow(2).sum(1) if w.dim() > 1 else w.pow(2)


def build_pruner(kind: str, model: nn.Module, templates: Templates, reg: float) -> tp.pruner.BasePruner:
    """Torch-Pruning's `BNScalePruner` ("bn_l1") or our `GroupLassoPruner` ("group_l2") on
    `model`, traced with the templates paused; the segmentation head is left alone, as the
    templates leave it."""
    head = getattr(model, "segmentation_head", nn.Identity())
    example = torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()  # tracing must leave the BN statistics alone
    with templates.paused():
        if kind == "bn_l1":
            pruner = tp.pruner.BNScalePruner(model, example, tp.importance.BNScaleImportance(), reg=reg,
                                             ignored_layers=[head])
        elif kind == "group_l2":
            pruner = GroupLassoPruner(model, example, tp.importance.GroupMagnitudeImportance(p=2), reg=reg,
                                      ignored_layers=[head])
        else:
            raise ValueError(f"no Torch-Pruning regulariser {kind!r}")
    model.train(was_training)
    return pruner


class Regularizer(L.Callback):
    """Calls a Torch-Pruning pruner's `regularize(model)` after backward and before each
    optimiser step (Lightning's `on_before_optimizer_step`), where Torch-Pruning wants it."""

    def __init__(self, pruner: tp.pruner.BasePruner, model: nn.Module) -> None:
        self.pruner, self.model = pruner, model

    def on_before_optimizer_step(self, *_args) -> None:
        self.pruner.regularize(self.model)
