"""Feature templates: one learnable scale per prunable channel, shared by coupled channels.

Torch-Pruning's DependencyGraph finds the groups of coupled channels (residual adds, skip
concatenations, depthwise convs). Each channel index of a group is one *entry*: one
template value, one keep/remove decision and one MAC cost, shared by every layer of the
group. Templates multiply feature maps only where folding them back is exact:

* after every BatchNorm of the group: s·BN(x) is BN with γ←s·γ, β←s·β, whatever follows;
* after a group conv whose output does not go straight into BNs of the group (the
  depthwise half of a separable conv, FPN's lateral convs): W←s·W, b←s·b.

An entry at 0 zeroes its channel everywhere downstream (ReLU, add, concat, pooling and
resizing map 0 to 0), so removing the channel changes nothing: `removal.fold_and_remove` turns the
template-masked model into a smaller plain one with the same outputs.

Never pruned: `ignored_layers` and the segmentation head's outputs; groups holding a
GroupNorm or LayerNorm (removing channels breaks their groups or statistics: FPN's
segmentation blocks stay whole), reaching a model output, or with layers the MAC model
does not know (grouped non-depthwise convs, transposed convs, linear layers).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn

from pipeline.pruning.costs import CostModel, MacCost

_PASS_THROUGH = (tp.ops._ElementWiseOp, tp.ops._ConcatOp, tp.ops._SplitOp)  # ops that keep 0 at 0


@dataclass
class Member:
    """Channels `idx` of layer `name` along `dim` ("out" or "in") carry the group's entries `root`."""

    name: str
    dim: str
    idx: Tensor
    root: Tensor


@dataclass
class Group:
    """A dependency group: its root conv (its key), first flat entry, number of entries, members."""

    name: str
    offset: int
    size: int
    members: list[Member]


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _supported(m: nn.Module) -> bool:
    if type(m) is nn.Conv2d:
        return m.groups == 1 or _is_depthwise(m)
    if type(m) is nn.BatchNorm2d:
        return m.affine  # γ and β are where a template folds
    return isinstance(m, _PASS_THROUGH)


def _dense_channels(m: nn.Module) -> tuple[int, int]:
    """(input, output) channels of a conv or BN as it is now."""
    return (m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.num_features, m.num_features)


def _magnitude(m: nn.Module) -> Tensor:
    """Per-channel scale of a template site: |γ| of a BN, RMS of each filter of a conv."""
    w = m.weight.detach()
    return w.abs() if isinstance(m, nn.BatchNorm2d) else w.flatten(1).pow(2).mean(1).sqrt()


def _coefficients(m: nn.Module, hw: int) -> tuple[float, float]:
    """(a, b) with MACs = a·kin·kout + b·kout for kin/kout channels kept, as Torch-Pruning counts."""
    if isinstance(m, nn.BatchNorm2d):
        return 0.0, 2.0 * hw
    k, bias = math.prod(m.kernel_size), hw if m.bias is not None else 0
    return (0.0, hw * k + bias) if _is_depthwise(m) else (hw * k / m.groups, bias)


class Templates(nn.Module):
    """One Parameter per dependency group (one value per entry, initialised to 1), the hooks
    that apply them, and a MAC model of the convs and BNs over the entries kept."""

    def __init__(self, model: nn.Module, dg: tp.DependencyGraph, groups: list[Group], hw: dict[str, int], macs: int):
        super().__init__()
        object.__setattr__(self, "model", model)  # a plain reference: not a submodule of the templates
        self.groups, self.dg = groups, dg
        self.dense_macs = macs  # of the whole model, by Torch-Pruning's counter (as measure.py counts)
        # rules every keep set follows (see `legal`): channel counts a multiple of round_to, and
        # at most the share max_removed of any group removed
        self.round_to: int | None = None
        self.max_removed = 1.0
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(g.size)) for g in groups])
        self.entries = n = sum(g.size for g in groups)
        # per (layer, "in"/"out"): the entry of each channel; entry n marks channels never pruned
        maps = {(name, dim): torch.full((size,), n) for name in hw
                for dim, size in zip(("in", "out"), _dense_channels(model.get_submodule(name)), strict=True)}
        self.sites: dict[str, Tensor] = {}  # template sites: layer -> entry of each output channel
        for g in groups:
            outs = {model.get_submodule(m.name) for m in g.members if m.dim == "out"}
            for mem in g.members:
                layer = model.get_submodule(mem.name)  # (Torch-Pruning files depthwise convs as "out")
                maps[mem.name, mem.dim][mem.idx] = entries = g.offset + mem.root
                if mem.dim == "out" and self._is_site(layer, outs):
                    self.sites.setdefault(mem.name, torch.full((layer.weight.shape[0],), n))[mem.idx] = entries
        self.maps = {k: (maps[k, "in"], maps[k, "out"]) for k in hw}  # layer -> entry per (in, out) channel
        self.layers = [(*_coefficients(model.get_submodule(k), hw[k]), maps[k, "in"], maps[k, "out"]) for k in hw]
        # a site's magnitudes count relative to its mean at attach time: unit-free and fixed
        self.ref = {s: float(_magnitude(model.get_submodule(s)).mean()) or 1.0 for s in self.sites}
        # the hooks index the templates on the model's device: each site's entries are a buffer
        # (moving with the templates), and the model's forward builds the flat vector once
        for i, entry in enumerate(self.sites.values()):
            self.register_buffer(f"_site{i}", entry.clone(), persistent=False)
        self._flat: Tensor | None = None
        self.handles = self._hook_up()
        # the entries each layer of a group holds: a concatenation's parts are separate layers
        self.segments = list({tuple((g.offset + m.root).tolist()) for g in groups for m in g.members if m.dim == "out"})
        self.dense_modelled = self.kept_macs(torch.ones(n, dtype=torch.bool))
        self.cost = self._cost_per_entry()
        # what targets count: MACs unless the prune run sets a device's latency (pipeline/pruning/costs.py)
        self.cost_model: CostModel = MacCost(self)

    def _is_site(self, layer: nn.Module, group_outs: set[nn.Module]) -> bool:
        """BNs always; convs unless all their output goes straight into BNs of the group."""
        if isinstance(layer, nn.BatchNorm2d):
            return True
        outputs = [o.module for o in self.dg.module2node[layer].outputs]
        return not outputs or not all(isinstance(o, nn.BatchNorm2d) and o in group_outs for o in outputs)

    def _hook_up(self) -> list:
        model = self.model
        return [model.register_forward_pre_hook(self._build_flat), model.register_forward_hook(self._drop_flat),
                *(model.get_submodule(site).register_forward_hook(self._hook(f"_site{i}"))
                  for i, site in enumerate(self.sites))]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The model without the templates' hooks for a while: another dependency graph traced
        through them (Torch-Pruning's pruners build their own) would lose the groups."""
        if not self.handles:
            raise RuntimeError("the templates are not attached (already folded or removed)")
        self.remove_hooks()
        try:
            yield
        finally:
            self.handles = self._hook_up()

    def _build_flat(self, *_args) -> None:
        self._flat = self.flat(with_one=True)

    def _drop_flat(self, *_args) -> None:
        self._flat = None  # the next forward (after an optimiser step) needs fresh values

    def _hook(self, buffer: str):
        def apply(_module: nn.Module, _inputs: tuple, out: Tensor) -> Tensor:
            flat = self._flat if self._flat is not None else self.flat(with_one=True)
            return out * flat[getattr(self, buffer)].view(1, -1, *[1] * (out.dim() - 2))

        return apply

    def flat(self, with_one: bool = False) -> Tensor:
        """All template values, group after group (with a trailing 1 for unpruned channels)."""
        return torch.cat([*self.scales, *([self.scales[0].new_ones(1)] if with_one else [])])

    def split(self, flat: Tensor) -> dict[str, Tensor]:
        """A per-entry tensor as {group name: its slice}."""
        return {g.name: flat[g.offset : g.offset + g.size] for g in self.groups}

    def join(self, per_group: dict[str, Tensor]) -> Tensor:
        """The inverse of `split`."""
        return torch.cat([per_group[g.name] for g in self.groups])

    @torch.no_grad()
    def neighbour_scale(self) -> Tensor:
        """Per entry, the mean over its sites of |γ| (BN) or filter RMS (conv), each relative to
        the site's mean at attach time."""
        total, count = torch.zeros(self.entries + 1), torch.zeros(self.entries + 1)
        for name, entry in self.sites.items():
            total.index_add_(0, entry, _magnitude(self.model.get_submodule(name)).cpu() / self.ref[name])
            count.index_add_(0, entry, torch.ones(len(entry)))
        return (total / count.clamp_min(1))[:-1]

    @torch.no_grad()
    def effective_scale(self) -> Tensor:
        """|s|·neighbour_scale per entry, the scale a channel really passes on: moving scale
        between s and γ (or a site conv's weights) leaves it unchanged, so cannot game decisions."""
        return self.flat().detach().cpu().abs() * self.neighbour_scale()

    def legal(self, keep: Tensor, scores: Tensor) -> Tensor:
        """`round_keep` per group by the rules `round_to` and `max_removed`, then at least one
        channel in every layer of a group, adding back its highest-`scores` entry: no layer
        may lose all its channels."""
        keep = round_keep(keep, scores, [g.size for g in self.groups], self.round_to, self.max_removed)
        for segment in map(list, self.segments):
            if not keep[segment].any():
                keep[segment[int(scores[segment].argmax())]] = True
        return keep

    def budget(self, macs_reduction: float) -> float:
        """The modelled MACs (convs and BNs) left once the whole model's MACs fall by
        `macs_reduction`: the modelled layers absorb all of the cut."""
        return self.dense_modelled - macs_reduction * self.dense_macs

    def kept_macs(self, keep: Tensor) -> float:
        """Modelled MACs (convs and BNs, as Torch-Pruning counts them) with only `keep` entries."""
        k = torch.cat([keep.double(), torch.ones(1, dtype=torch.float64)])
        return float(sum(a * k[i].sum() * k[o].sum() + b * k[o].sum() for a, b, i, o in self.layers))

    def _cost_per_entry(self) -> Tensor:
        """c per entry: the MACs saved by removing that entry alone, in every layer it touches."""
        cost = torch.zeros(self.entries + 1, dtype=torch.float64)
        for a, b, i, o in self.layers:
            n_in, n_out = (torch.bincount(e, minlength=self.entries + 1) for e in (i, o))
            cost += a * (len(i) * len(o) - (len(i) - n_in) * (len(o) - n_out)) + b * n_out
        return cost[:-1].float()

    @torch.no_grad()
    def fold(self) -> None:
        """Multiply the templates into their BN (γ, β) or conv (W, b) and remove the hooks."""
        if not self.handles:
            raise RuntimeError("the templates are not attached (already folded or removed)")
        flat = self.flat(with_one=True)
        for name, entry in self.sites.items():
            m = self.model.get_submodule(name)
            m.weight.mul_(flat[entry].view(-1, *[1] * (m.weight.dim() - 1)))
            if m.bias is not None:
                m.bias.mul_(flat[entry])
        self.remove_hooks()

    def remove_hooks(self) -> None:
        """Detach the templates: the model computes as if every template were 1."""
        for h in self.handles:
            h.remove()
        self.handles = []


def attach_templates(model: nn.Module, example_input: Tensor, ignored_layers: Sequence[nn.Module] = ()) -> Templates:
    """Trace `model` on one example image (1, 3, H, W), find the prunable dependency groups
    and hook a template (all ones) on each; the model's outputs are unchanged until trained."""
    was_training = model.training
    model.eval()  # the forward passes below must leave BN statistics alone (tp's tracing sets eval too)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    names = {m: n for n, m in model.named_modules()}
    hw: dict[str, int] = {}  # output pixels per conv and BN (summed if a layer runs twice)

    def record(layer: nn.Module, _inputs: tuple, out: Tensor) -> None:
        hw[names[layer]] = hw.get(names[layer], 0) + out[0, 0].numel()

    hooks = [m.register_forward_hook(record) for m in model.modules() if type(m) in (nn.Conv2d, nn.BatchNorm2d)]
    with torch.no_grad():
        model(example_input)
    for h in hooks:
        h.remove()
    macs = int(tp.utils.count_ops_and_params(model, example_input[:1])[0])
    head = getattr(model, "segmentation_head", nn.Identity())
    groups: list[Group] = []
    for group in dg.get_all_groups(ignored_layers=[*head.modules(), *ignored_layers], root_module_types=[nn.Conv2d]):
        if not all(_supported(item.dep.target.module) for item in group):
            continue
        members = [
            Member(names[item.dep.target.module], "out" if dg.is_out_channel_pruning_fn(item.dep.handler) else "in",
                   torch.tensor(item.idxs), torch.tensor(item.root_idxs))
            for item in group if isinstance(item.dep.target.module, (nn.Conv2d, nn.BatchNorm2d))
        ]
        size = len(group[0].idxs)
        groups.append(Group(names[group[0].dep.target.module], sum(g.size for g in groups), size, members))
    model.train(was_training)
    return Templates(model, dg, groups, hw, macs)


def round_keep(keep: Tensor, scores: Tensor, sizes: Sequence[int], round_to: int | None = None,
               max_removed: float = 1.0) -> Tensor:
    """Per group (flat `keep` cut into `sizes`), keep at least one entry, at least the share
    1 - `max_removed` of the group, and a multiple of `round_to` (capped at the group size),
    adding back the highest-`scores` entries."""
    keep, start, step = keep.clone().bool(), 0, round_to or 1
    for size in sizes:
        part, n = keep[start : start + size], int(keep[start : start + size].sum())
        least = max(1, math.ceil((1 - max_removed) * size - 1e-9))
        want = min(size, max(step, math.ceil(max(n, least) / step) * step))
        if want > n:
            part[torch.where(part, math.inf, scores[start : start + size].float()).topk(want).indices] = True
        start += size
    return keep
