"""Criteria from the rank of feature maps: HRank (Lin et al., CVPR 2020) and the seed thesis
002's second method (feature-map similarity and average rank). Both read the calibration
crops through `feature_maps.py` and cut by `FeatureMapMethod`: published with per-layer
rates, they are ranked globally after per-group mean normalisation (`allocation.py`).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from pipeline.pruning.feature_maps import FeatureMapMethod, Reader, per_entry, visit_feature_maps
from pipeline.pruning.method import PruneContext
from pipeline.pruning.templates import Group


def map_ranks(maps: Tensor) -> Tensor:
    """(batch, channels): the matrix rank of every h x w map, at torch's default tolerance
    (HRank's `matrix_rank`)."""
    return torch.linalg.matrix_rank(maps).float()


def map_correlations(maps: Tensor) -> Tensor:
    """(batch, channels, channels): Pearson correlation of every pair of maps of an image
    (0 for a constant map: it resembles nothing)."""
    flat = maps.flatten(2)
    centred = flat - flat.mean(-1, keepdim=True)
    norm = centred.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, centred / norm.clamp_min(1e-12), 0.0)
    return unit @ unit.transpose(1, 2)


class RankStatistics:
    """Per group, sums over the calibration images of each channel's map rank and (with
    `pairs`) of each pair's correlation; `visit` is a `feature_maps.Visit`."""

    def __init__(self, pairs: bool = False) -> None:
        self.pairs = pairs
        self.ranks: dict[str, Tensor] = defaultdict(lambda: 0)
        self.correlations: dict[str, Tensor] = defaultdict(lambda: 0)
        self.images: dict[str, int] = defaultdict(int)

    def visit(self, group: Group, maps: Tensor) -> None:
        self.ranks[group.name] = self.ranks[group.name] + map_ranks(maps).sum(0)
        if self.pairs:
            self.correlations[group.name] = self.correlations[group.name] + map_correlations(maps).sum(0)
        self.images[group.name] += len(maps)

    def mean_rank(self, name: str) -> Tensor:
        return self.ranks[name] / self.images[name]

    def mean_correlation(self, name: str) -> Tensor:
        return self.correlations[name] / self.images[name]


def collect(ctx: PruneContext, readers: list[Reader], pairs: bool = False) -> RankStatistics:
    stats = RankStatistics(pairs)
    visit_feature_maps(ctx.model, readers, ctx.calibration, stats.visit)
    return stats


class HRankMethod(FeatureMapMethod):
    """HRank: a channel's score is the average rank of its feature maps over the calibration
    crops (low rank: little information, cheap to reproduce from other channels). Maps are
    read after the activation, as HRank does (`feature_maps.py`). HRank prunes each layer by
    a preset rate; here the ranks are normalised by their group's mean and cut globally
    (`allocation.keep_normalised`). Ranks are integers, so many are tied (full-rank maps):
    `tied_share` reports how many."""

    def scores(self, ctx: PruneContext, readers: list[Reader]) -> Tensor:
        stats = collect(ctx, readers)
        return per_entry(ctx.templates, {g.name: stats.mean_rank(g.name) for g in ctx.templates.groups})


def similarity_discounted_rank(rank: Tensor, similarity: Tensor) -> Tensor:
    """Per channel, its average rank times (1 - its largest similarity to a channel that beats
    it): a higher rank beats, equal ranks go to the lower index. Of two alike maps the
    lower-rank one scores near 0, a map like no better one keeps its rank."""
    n = len(rank)
    index = torch.arange(n)
    beats = (rank[None, :] > rank[:, None]) | ((rank[None, :] == rank[:, None]) & (index[None, :] < index[:, None]))
    closest = torch.where(beats, similarity, torch.zeros(n, n)).amax(1) if n > 1 else torch.zeros(n)
    return rank * (1 - closest.clamp(0, 1))


class FmRankSimilarityMethod(FeatureMapMethod):
    """Seed thesis 002, its second method: among filters whose feature maps are similar, keep
    the ones whose maps have the larger average rank.

    The abstract names neither the similarity nor how similar is "similar", so this follows
    the closest published criteria: HRank's average rank of the maps over the calibration
    crops, and as similarity the Pearson correlation of two channels' maps, averaged over
    the crops (correlation-based redundancy criteria use it; plain cosine similarity would
    call any two non-negative post-ReLU maps alike). Instead of a threshold, similarity is
    graded: a channel's score is its average rank times (1 - its largest correlation with a
    channel of the same group whose rank is higher), so the lower-rank one of two alike
    maps drops first, and a map unlike every better one is judged by its rank as in HRank.
    The thesis' replacement of fully connected layers by average pooling does not apply to
    a segmentation Unet. Published with per-layer rates, the scores are normalised by
    their group's mean and cut globally (`allocation.keep_normalised`)."""

    def scores(self, ctx: PruneContext, readers: list[Reader]) -> Tensor:
        stats = collect(ctx, readers, pairs=True)
        return per_entry(
            ctx.templates,
            {
                g.name: similarity_discounted_rank(stats.mean_rank(g.name).cpu(), stats.mean_correlation(g.name).cpu())
                for g in ctx.templates.groups
            },
        )
