"""Filter-weight criteria over the templates' dependency groups: the L2 norm (SFP and its soft
variants), the distance to the geometric median (FPGM) and near-duplicate filters (the
clustering of seed thesis 001), and `FpgmMethod`.

An entry's *filter* is the output-channel weights of every conv of its group that carries
that entry (the root conv, the convs a residual add ties to it, a depthwise conv),
flattened and laid side by side: the group's channel is kept or removed as one, so it is
judged as one vector. BatchNorm parameters and the next layers' input weights are not part
of it: the published criteria read the filters alone.
"""

from __future__ import annotations

import torch
from scipy.cluster.hierarchy import fcluster, linkage
from torch import Tensor, nn

from pipeline.pruning.allocation import keep_normalised, normalise_per_group
from pipeline.pruning.hqs_l0 import decide_by_score
from pipeline.pruning.method import Method, PruneContext
from pipeline.pruning.templates import Group, Templates


@torch.no_grad()
def group_filters(model: nn.Module, group: Group) -> Tensor:
    """(entries, features) on the CPU: row k holds the flattened filters of every conv of the
    group that carries entry k (zeros in the columns of a conv that does not: a concatenation's parts)."""
    parts = []
    for member in group.members:
        layer = model.get_submodule(member.name)
        if member.dim != "out" or not isinstance(layer, nn.Conv2d):
            continue
        weights = layer.weight.detach().float().cpu()[member.idx].flatten(1)
        part = torch.zeros(group.size, weights.shape[1])
        part[member.root] = weights
        parts.append(part)
    return torch.cat(parts, 1) if parts else torch.zeros(group.size, 0)


def filter_norms(model: nn.Module, templates: Templates) -> Tensor:
    """Per template entry, the L2 norm of its filter (SFP's criterion)."""
    return torch.cat([group_filters(model, g).norm(dim=1) for g in templates.groups])


def geometric_median_distance(filters: Tensor) -> Tensor:
    """Per row, the summed Euclidean distance to every other row: FPGM's score. The row with
    the smallest sum lies nearest the rows' geometric median, so the others can stand in for it."""
    return torch.cdist(filters.double(), filters.double()).sum(1).float()


def duplicates_in(filters: Tensor, distance: float) -> Tensor:
    """Per row, True when it is a near-duplicate of a larger-norm row: rows are clustered by
    complete-linkage agglomeration cut at `distance` times the rows' mean norm (so every two
    rows of a cluster are that close), and all but the largest-norm row of each cluster are marked."""
    norms = filters.norm(dim=1)
    marked = torch.zeros(len(filters), dtype=torch.bool)
    scale = float(norms.mean()) if len(filters) else 0.0
    if len(filters) < 2 or scale == 0:
        return marked
    labels = torch.as_tensor(fcluster(linkage(filters.double().numpy(), "complete"), distance * scale, "distance"))
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        if len(members) > 1:
            marked[members] = True
            marked[members[norms[members].argmax()]] = False
    return marked


def near_duplicates(model: nn.Module, templates: Templates, distance: float) -> Tensor:
    """Per template entry, True when its filter is a near-duplicate of a larger one of its group."""
    return torch.cat([duplicates_in(group_filters(model, g), distance) for g in templates.groups])


def select_by_norm(
    model: nn.Module, templates: Templates, reduction: float, duplicate_distance: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(keep, the scores decided on, the entries the score kept): the lowest filter norms go
    until the MAC target holds. SFP's rate is per layer: the norms are normalised per group
    (`allocation.normalise_per_group`) and ranked globally within the templates' rules.
    With `duplicate_distance`, near-duplicate filters are candidates first: their scores
    stay, every other score is lifted above the largest candidate's."""
    scores = normalise_per_group(templates, filter_norms(model, templates))
    if duplicate_distance is not None:
        duplicate = near_duplicates(model, templates, duplicate_distance)
        if duplicate.any():
            scores = torch.where(duplicate, scores, scores + scores[duplicate].max())
    keep, by_score = decide_by_score(templates, scores, reduction)
    return keep, scores, by_score


class FpgmMethod(Method):
    """FPGM (He et al. 2019), one shot: the filters nearest their group's geometric median
    (smallest summed distance to the others) go first.

    Published with a uniform per-layer rate; here the MAC target is met by a global ranking of
    the scores normalised per group (`allocation.keep_normalised`). Not Torch-Pruning's
    `FPGMImportance`: it measures distances between the filters' squared magnitudes (so a
    filter and its negation count as equal) and adds the next layers' input weights, where
    the paper measures distances between the filters themselves."""

    def keep(self, ctx: PruneContext) -> Tensor:
        scores = torch.cat([geometric_median_distance(group_filters(ctx.model, g)) for g in ctx.templates.groups])
        keep, self.decision_scores, self.decided_by_score = keep_normalised(ctx.templates, scores, ctx.reduction)
        return keep
