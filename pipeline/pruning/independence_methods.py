"""Criteria from how replaceable a channel's feature map is by the other maps of its layer:
CHIP (Sui et al., NeurIPS 2021; nuclear norm) and the seed thesis 004's feature-map
correlation independence (information entropy). Both read the calibration crops through
`feature_maps.py` and cut by `FeatureMapMethod`: published with per-layer rates, they are
ranked globally after per-group mean normalisation (`allocation.py`).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from pipeline.pruning.feature_maps import FeatureMapMethod, Reader, per_entry, visit_feature_maps
from pipeline.pruning.method import PruneContext
from pipeline.pruning.templates import Group

_CHUNK = 1 << 22  # doubles per batched eigen-decomposition (32 MB)


def nuclear_norm_drops(a: Tensor) -> Tensor:
    """Per row i of `a` (channels x pixels), ||a||_* - ||a without row i||_*: CHIP's channel
    independence. Singular values come from the smaller Gram matrix (a·aᵀ without row and
    column i, or aᵀ·a minus row i's outer product), eigen-decomposed in float64, batched."""
    a = a.double()
    rows, cols = a.shape
    if rows == 1:
        return a.norm().reshape(1)
    gram = a @ a.T if rows <= cols else a.T @ a

    def nuclear(g: Tensor) -> Tensor:
        return torch.linalg.eigvalsh(g).clamp_min(0).sqrt().sum(-1)

    full, side = nuclear(gram), len(gram) - (rows <= cols)
    chunk = max(1, _CHUNK // side**2)
    others = torch.arange(rows).repeat(rows, 1)[~torch.eye(rows, dtype=torch.bool)].view(rows, rows - 1)
    drops = []
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        if rows <= cols:  # remove row i of a: remove row and column i of a·aᵀ
            idx = others[part].to(a.device)
            sub = gram[idx[:, :, None], idx[:, None, :]]
        else:  # aᵀ·a is the sum of the rows' outer products
            sub = gram - a[part, :, None] * a[part, None, :]
        drops.append(full - nuclear(sub))
    return torch.cat(drops)


class ChipMethod(FeatureMapMethod):
    """CHIP: per image, the group's maps (after the activation, `feature_maps.py`) stacked as
    a channels x pixels matrix; a channel's independence is how much the matrix's nuclear
    norm falls when its row is removed, averaged over the calibration crops. A channel whose
    map is (nearly) a combination of the others' barely moves it. CHIP prunes each layer by a
    preset rate; here the scores are normalised by their group's mean and cut globally
    (`allocation.keep_normalised`)."""

    def scores(self, ctx: PruneContext, readers: list[Reader]) -> Tensor:
        total: dict[str, Tensor] = defaultdict(lambda: 0)
        images: dict[str, int] = defaultdict(int)

        def visit(group: Group, maps: Tensor) -> None:
            for image in maps.flatten(2):
                total[group.name] = total[group.name] + nuclear_norm_drops(image)
            images[group.name] += len(maps)

        visit_feature_maps(ctx.model, readers, ctx.calibration, visit)
        return per_entry(ctx.templates, {g.name: total[g.name] / images[g.name] for g in ctx.templates.groups})


class PixelMoments:
    """Per group, over every pixel of every calibration crop: count, sums of the maps and of
    their pairwise products (float64), and each channel's range."""

    def __init__(self) -> None:
        self.count: dict[str, int] = defaultdict(int)
        self.sum: dict[str, Tensor] = {}
        self.products: dict[str, Tensor] = {}
        self.low: dict[str, Tensor] = {}
        self.high: dict[str, Tensor] = {}

    def visit(self, group: Group, maps: Tensor) -> None:
        x, name = pixels(maps), group.name
        if name not in self.sum:
            self.sum[name], self.products[name] = x.sum(1), x @ x.T
            self.low[name], self.high[name] = x.amin(1), x.amax(1)
        else:
            self.sum[name] += x.sum(1)
            self.products[name] += x @ x.T
            self.low[name] = torch.minimum(self.low[name], x.amin(1))
            self.high[name] = torch.maximum(self.high[name], x.amax(1))
        self.count[name] += x.shape[1]

    def reconstruction(self, name: str, ridge: float) -> tuple[Tensor, Tensor]:
        """(mean, R) with x - R·(x - mean) the ridge least-squares fit of each channel from the
        others, on standardised channels (so the ridge weighs alike on every scale):
        R = S·diag(P)⁻¹·P·S⁻¹, P the inverse of the correlation matrix plus `ridge` on its
        diagonal, S the channels' standard deviations (1 for a constant channel)."""
        mean = self.sum[name] / self.count[name]
        cov = self.products[name] / self.count[name] - torch.outer(mean, mean)
        std = cov.diagonal().clamp_min(0).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))
        correlation = cov / torch.outer(std, std)
        eye = torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        precision = torch.linalg.inv(correlation + ridge * eye)
        return mean, std[:, None] * (precision / precision.diagonal()[:, None]) / std[None, :]


def pixels(maps: Tensor) -> Tensor:
    """(batch, channels, h, w) -> (channels, batch·h·w) in float64."""
    return maps.transpose(0, 1).flatten(1).double()


def binned(x: Tensor, low: Tensor, high: Tensor, bins: int) -> Tensor:
    """Each row of `x` in `bins` equal bins over [low, high] of its row (outside: the end bins)."""
    width = (high - low).clamp_min(1e-12)[:, None]
    return ((x - low[:, None]) / width * bins).long().clamp(0, bins - 1)


def conditional_entropy(joint: Tensor) -> Tensor:
    """Per channel, H(X | Y) in bits from its joint histogram (channels, bins of X, bins of Y)."""

    def entropy(counts: Tensor) -> Tensor:
        p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
        return -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)

    return entropy(joint.flatten(1)) - entropy(joint.sum(1))


class CorrelationIndependenceMethod(FeatureMapMethod):
    """Seed thesis 004: a channel is redundant when its feature map can be replaced by the
    other maps of its layer; that "correlation independence", quantified by information
    entropy, ranks the channels, and the least independent go.

    The abstract leaves open the replacement and its "two-dimensional auxiliary matrix".
    Replacement follows the closest published criterion, CHIP (linear: a map is replaceable
    when it is a combination of the others): each channel's best linear reconstruction from
    the other channels of its group, fitted by ridge least squares on the standardised maps
    over every pixel of the calibration crops (the ridge keeps wide layers with few pixels,
    512 channels at 6 x 6 px a crop, from being "explained" by overfitting). The auxiliary
    matrix is read as the 2-D joint histogram of (map value, reconstructed value) per pixel,
    as image processing's 2-D entropy pairs a pixel with its neighbourhood's mean; the
    independence is the conditional entropy H(map | reconstruction) from it, in bits: 0 for
    a map the others reproduce or for a constant one, the map's own entropy when the others
    tell nothing about it. Binned on each channel's own range, it ignores the channel's
    scale (CHIP's nuclear norm does not). A duplicated pair scores low on both sides (each
    replaces the other) and may go together: a one-shot ranking does not re-score after a
    removal. The thesis' genetic algorithm that turns these local scores into global ones
    is out of scope: published with per-layer rates, the scores are normalised by their
    group's mean and cut globally
    (`allocation.keep_normalised`)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        bins: int = Field(32, ge=2, le=256)  # per axis of the joint histogram
        ridge: float = Field(0.05, gt=0)  # the fit's diagonal loading, on the channels' correlation matrix

    def scores(self, ctx: PruneContext, readers: list[Reader]) -> Tensor:
        moments, bins = PixelMoments(), self.options.bins
        visit_feature_maps(ctx.model, readers, ctx.calibration, moments.visit)
        fits = {name: moments.reconstruction(name, self.options.ridge) for name in moments.sum}
        joint: dict[str, Tensor] = {}

        def visit(group: Group, maps: Tensor) -> None:
            x, (mean, residual), name = pixels(maps), fits[group.name], group.name
            fitted = x - residual @ (x - mean[:, None])
            low, high = moments.low[name], moments.high[name]
            cell = binned(x, low, high, bins) * bins + binned(fitted, low, high, bins)
            offsets = torch.arange(len(x), device=x.device)[:, None] * bins * bins
            counts = torch.bincount((cell + offsets).flatten(), minlength=len(x) * bins * bins)
            joint[name] = joint.get(name, 0) + counts.view(len(x), bins, bins)

        visit_feature_maps(ctx.model, readers, ctx.calibration, visit)
        return per_entry(
            ctx.templates, {g.name: conditional_entropy(joint[g.name].double()) for g in ctx.templates.groups}
        )
