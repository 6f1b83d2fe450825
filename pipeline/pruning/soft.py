"""Soft filter pruning while training: a Lightning callback (`SoftPruner`) that selects the
lowest-norm filters before training and at the end of every epoch, and a small schedule that
says how the selected filters head for zero (`ResetToZero`: SFP; `GeometricDecay`: the
soft-and-smooth variant of seed thesis 001). The selected filters keep training, so one the
gradient regrows past others is not selected again; the last selection is what is removed.

What "a filter" is here (`channel_factors`, `scale_channels`): the output channel of every
conv of the entry's dependency group (weights and bias), and, while decaying, the affine
parameters and running statistics of its BatchNorms. Working on the weights, not on the
feature templates (frozen at 1 here), keeps SFP as published: the pre-trained filter is
lost at a reset, which is the information loss the smooth variant avoids.

Per optimiser step the callback only multiplies weights by factors kept on their device (no
host-device sync); the selections read the weights back once per epoch.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from pipeline.pruning.filters import select_by_norm
from pipeline.pruning.method import Method, PruneContext
from pipeline.pruning.templates import Templates


class ResetToZero:
    """SFP: at every selection the selected filters are set to zero; nothing in between."""

    per_step: float | None = None  # the factor applied after every optimiser step (None: none)

    def start(self, steps: int) -> None:
        """Told the number of optimiser steps the schedule spans."""

    def at_selection(self, last: bool) -> float | None:
        """The factor applied to the selected filters at a selection (None: none)."""
        return 0.0


class GeometricDecay:
    """Soft and smooth: after every optimiser step the selected filters are multiplied by the
    same factor, chosen so that a filter selected throughout and never regrown by its gradient
    ends at `decay_to` of its value; the last selection is then set to zero, as SFP's is."""

    def __init__(self, decay_to: float) -> None:
        self.decay_to = decay_to
        self.per_step: float | None = None

    def start(self, steps: int) -> None:
        self.per_step = self.decay_to ** (1 / max(steps, 1))

    def at_selection(self, last: bool) -> float | None:
        return 0.0 if last else None


def channel_factors(model: nn.Module, templates: Templates, removed: Tensor, factor: float) -> dict[str, Tensor]:
    """Per conv or BN carrying output channels of a `removed` entry: one factor per output
    channel, `factor` on those channels and 1 elsewhere, on the layer's device."""
    factors: dict[str, Tensor] = {}
    for group in templates.groups:
        chosen = removed[group.offset : group.offset + group.size]
        if not chosen.any():
            continue
        for member in group.members:
            if member.dim == "out":
                channels = model.get_submodule(member.name).weight.shape[0]
                factors.setdefault(member.name, torch.ones(channels))[member.idx[chosen[member.root]]] = factor
    return {name: f.to(model.get_submodule(name).weight.device) for name, f in factors.items()}


@torch.no_grad()
def scale_channels(model: nn.Module, factors: dict[str, Tensor]) -> None:
    """Multiply each layer's output channels by `factors`: a conv's weights and bias; a BN's
    γ, β and running mean, and its running variance by the square.

    A factor of 0 (a reset) leaves the BNs alone, as SFP's reference code does: the channel
    then passes its shift β, and the gradient reaches the zeroed filter through the BN
    wherever β clears the ReLU. Zeroing γ and β too would hold the pre-activation at exactly 0,
    where ReLU passes no gradient, so the filter could never come back. A decay scales the
    BN too: BN renormalises its input, so a decay of the conv weights alone would leave the
    channel's output unchanged."""
    for name, factor in factors.items():
        layer = model.get_submodule(name)
        if isinstance(layer, nn.BatchNorm2d):
            factor = torch.where(factor > 0, factor, 1.0)
            for tensor in (layer.weight, layer.bias, layer.running_mean):
                if tensor is not None:
                    tensor.mul_(factor)
            if layer.running_var is not None:
                layer.running_var.mul_(factor * factor)
        else:
            layer.weight.mul_(factor.view(-1, *[1] * (layer.weight.dim() - 1)))
            if layer.bias is not None:
                layer.bias.mul_(factor)


class SoftPruner(L.Callback):
    """Selects before training and after every epoch (Lightning's `on_train_epoch_end`, after
    the epoch's last optimiser step), applying the schedule's factor at each selection and
    its per-step factor after every optimiser step (`on_train_batch_end`). `selection` holds
    the last (keep mask, scores decided on, entries the score kept)."""

    def __init__(
        self,
        model: nn.Module,
        templates: Templates,
        reduction: float,
        schedule: ResetToZero | GeometricDecay,
        duplicate_distance: float | None = None,
    ) -> None:
        self.model, self.templates, self.reduction = model, templates, reduction
        self.schedule, self.duplicate_distance = schedule, duplicate_distance
        self.selection: tuple[Tensor, Tensor, Tensor] | None = None
        self.step_factors: dict[str, Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, *_args) -> None:
        """A resumed run has its selection from the checkpoint, and its weights carry the schedule's work."""
        self.schedule.start(int(trainer.estimated_stepping_batches))
        if self.selection is None:
            self.select(last=False)
        else:
            self._prepare_steps()

    def on_train_batch_end(self, *_args) -> None:
        if self.step_factors:
            scale_channels(self.model, self.step_factors)

    def on_train_epoch_end(self, trainer: L.Trainer, *_args) -> None:
        self.select(last=trainer.current_epoch + 1 >= trainer.max_epochs)

    def select(self, last: bool) -> None:
        """Select the filters that go now and apply the schedule's factor to them."""
        self.selection = self.choose()
        factor = self.schedule.at_selection(last)
        if factor is not None:
            scale_channels(self.model, channel_factors(self.model, self.templates, ~self.selection[0], factor))
        self._prepare_steps()

    def choose(self) -> tuple[Tensor, Tensor, Tensor]:
        """(keep, the scores decided on, the entries the score kept): the criterion of a
        selection, here the lowest filter norms (a subclass may choose otherwise, e.g. `tcfp`)."""
        return select_by_norm(self.model, self.templates, self.reduction, self.duplicate_distance)

    def _prepare_steps(self) -> None:
        per_step = self.schedule.per_step
        removed = ~self.selection[0]
        self.step_factors = {} if per_step is None else channel_factors(self.model, self.templates, removed, per_step)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.selection is None else dict(zip(("keep", "scores", "by_score"), self.selection, strict=True))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.selection = (state["keep"], state["scores"], state["by_score"])


class SfpMethod(Method):
    """SFP (He et al. 2018): before training and after every sparsification epoch (as the
    authors' code does), the filters with the lowest L2 norms, enough to meet the MAC
    target, are set to zero and keep training; the last selection is removed.

    SFP prunes every layer at one rate; here the norms are normalised per dependency group and
    ranked globally (`allocation.normalise_per_group`), within `max_layer_pruning` and the
    templates' other rules. The templates stay at 1: trained, they would take over the scale
    the schedule takes from the filters. BatchNorm statistics are re-estimated after removal."""

    trains = True

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        self.callback: SoftPruner | None = None

    def schedule(self) -> ResetToZero | GeometricDecay:
        return ResetToZero()

    def duplicate_distance(self) -> float | None:
        return None

    def sparsifier(self, ctx: PruneContext) -> SoftPruner:
        ctx.templates.requires_grad_(False)
        self.callback = SoftPruner(
            ctx.model, ctx.templates, ctx.reduction, self.schedule(), self.duplicate_distance()
        )
        return self.callback

    def keep(self, ctx: PruneContext) -> Tensor:
        if self.callback is None or self.callback.selection is None:
            raise RuntimeError(f"{type(self).__name__}: train with its sparsifier before asking what to keep")
        keep, self.decision_scores, self.decided_by_score = self.callback.selection
        return keep


class SsfpMethod(SfpMethod):
    """Soft and smooth filter pruning (seed thesis 001): the selected filters decay gradually
    towards zero instead of being reset, keeping their pre-trained information longer.

    The thesis leaves the decay law open. The closest published method, SRFP (Cai et al.
    2020), multiplies the pruned filters by a coefficient that falls over training; here the
    factor is applied after every optimiser step (smooth within an epoch, no host sync) and
    is constant, so the decay is geometric: a filter selected throughout ends at `decay_to`
    of its value, before the last selection is set to zero and removed."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        # the share of its value a filter keeps after a whole schedule of decay (gradient aside)
        decay_to: float = Field(0.01, gt=0, lt=1)

    def schedule(self) -> ResetToZero | GeometricDecay:
        return GeometricDecay(self.options.decay_to)


class ClusterSsfpMethod(SsfpMethod):
    """Seed thesis 001's hybrid: `ssfp`, plus filters that are near-duplicates of another of
    their group are selected too, not only those with small norms.

    The thesis leaves the clustering open. Here each group's filters are clustered by
    complete-linkage agglomeration (scipy) cut at `duplicate_distance` times the group's mean
    filter norm, so every two filters of a cluster are at least that close; all but the
    largest-norm filter of each cluster become candidates and go before any other filter,
    lowest norm first, until the MAC target holds. A threshold says "near-duplicate"
    directly; k-means (as in C-SGD, Ding et al. 2019) would need a number of clusters."""

    class Options(SsfpMethod.Options):
        # filters closer than this share of their group's mean filter norm count as duplicates
        duplicate_distance: float = Field(0.2, gt=0)

    def duplicate_distance(self) -> float | None:
        return self.options.duplicate_distance
