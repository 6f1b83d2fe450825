"""TCFP (seed thesis 002) on toy groups whose outcome is known by hand: planted filters whose
strongest activations fall on known features, the L2 pruning inside a cluster, the loss
effect per cluster and the bisected threshold of the soft cut."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from pipeline.config import PruneCfg
from pipeline.pruning.feature_maps import find_readers, visit_feature_maps
from pipeline.pruning.filters import duplicates_in, filter_norms, group_filters
from pipeline.pruning.method import PruneContext
from pipeline.pruning.registry import create_method
from pipeline.pruning.tcfp import (
    PeakFeatures,
    TcfpPruner,
    cut_clusters,
    first_pruning,
    function_clusters,
)
from pipeline.pruning.templates import Templates, attach_templates
from tests.test_feature_map_methods import PlantedNet

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 16


def Planted(mix: Tensor) -> PlantedNet:  # noqa: N802 - reads like the class it builds
    """1x1 conv (weights `mix`) -> BN at identity -> ReLU -> head: channel c's map is
    relu(sum_i mix[c, i] * input_i), exactly (in eval mode)."""
    return PlantedNet(mix, relu=True)


def bump(row: int, col: int) -> Tensor:
    """A Gaussian blob (sigma 1.5 px, height 1) centred on (row, col): a feature at one place."""
    grid = torch.arange(SIDE, dtype=torch.float32)
    return torch.exp(-((grid[:, None] - row) ** 2 + (grid[None, :] - col) ** 2) / (2 * 1.5**2))


def test_planted_filters_cluster_by_the_feature_their_maximum_activation_responds_to():
    # input features A, B, C at three places; filters: A, 3A (same function, 3x the norm),
    # B, A + 0.6 B (peaks on A: A's function), C, -A (never fires), B + 0.3 C (peaks on B)
    mix = torch.tensor([[1.0, 0, 0], [3, 0, 0], [0, 1, 0], [1, 0.6, 0], [0, 0, 1], [-1, 0, 0], [0, 1, 0.3]])
    fields = torch.stack([bump(3, 4), bump(11, 11), bump(4, 12)])
    images = torch.stack([fields * (1 + i) for i in range(4)])  # the strongest image is the last
    model = Planted(mix).eval()
    templates = attach_templates(model, images[:1])
    peaks = PeakFeatures()
    loader = [{"image": images[:2]}, {"image": images[2:]}]
    visit_feature_maps(model, find_readers(model, templates, images[:1]), loader, peaks.visit)
    functions, fires = peaks.functions("conv")
    assert fires.tolist() == [True, True, True, True, True, False, True]
    # by hand: A's centre is where filters 0, 1 and 3 peak; there the layer responds with
    # A (=1 after scaling), 3A, 0, A + 0.6 B(A's centre) ~ A, 0, 0, 0.3 C(A's centre) ~ 0
    assert torch.allclose(functions[0], torch.tensor([1.0, 1, 0, 1, 0, 0, 0]), atol=1e-3)
    assert torch.equal(functions[0], functions[1]) and torch.equal(functions[0], functions[3])
    clusters = function_clusters(functions, fires, 0.2)
    groups = {frozenset((clusters == c).nonzero().flatten().tolist()) for c in clusters.unique()}
    assert groups == {frozenset({0, 1, 3}), frozenset({2, 6}), frozenset({4}), frozenset({5})}
    # their weights would tell otherwise: 0 and 1 are far apart, 3 is near neither
    assert not duplicates_in(group_filters(model, templates.groups[0]), 0.2).any()


class Line(nn.Module):
    """One prunable group of 6 filters with norms `norms` (every entry costs the same MACs)."""

    def __init__(self, norms: list[float]):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, len(norms), 1), nn.BatchNorm2d(len(norms))
        self.segmentation_head = nn.Conv2d(len(norms), 1, 1)
        with torch.no_grad():
            directions = torch.eye(3)[[0, 1, 2, 0, 1, 2]]
            self.conv.weight.copy_((torch.tensor(norms)[:, None] * directions)[..., None, None])
            self.conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.segmentation_head(torch.relu(self.bn(self.conv(x))))


def line(norms: list[float]) -> tuple[Line, Templates]:
    model = Line(norms)
    templates = attach_templates(model, torch.zeros(1, 3, 8, 8))
    templates.max_removed = 0.75
    return model, templates


def removing(templates: Templates, entries: float) -> float:
    """The MAC reduction that needs exactly `entries` entries of the one group removed."""
    return (entries - 0.5) * float(templates.cost[0]) / templates.dense_macs


def test_l2_pruning_inside_clusters_removes_the_smallest_redundant_members():
    norms = [3.0, 1.0, 2.0, 0.5, 4.0, 5.0]
    model, templates = line(norms)
    clusters = torch.tensor([0, 0, 0, 1, 2, 2])
    measured = filter_norms(model, templates)
    assert torch.allclose(measured, torch.tensor(norms))
    removed = {k: first_pruning(templates, clusters, measured, removing(templates, k)).nonzero().flatten().tolist()
               for k in (1, 2, 3)}
    # the candidates are all but each cluster's largest: 1 (norm 1), 2 (2), 4 (4); the
    # singleton 3 has the smallest norm of all (magnitude's first pick) but no twin to stand in
    assert removed == {1: [1], 2: [1, 2], 3: [1, 2, 4]}
    # no more than the candidates, however large the target
    most = first_pruning(templates, clusters, measured, removing(templates, 4))
    assert most.nonzero().flatten().tolist() == [1, 2, 4]


def test_the_bisected_threshold_cuts_whole_clusters_below_it_and_meets_the_target_exactly():
    model, templates = line([1.0, 2.0, 3.0, 1.0, 2.0, 5.0])
    clusters = torch.tensor([0, 0, 1, 1, 1, 2])
    effect = torch.tensor([1.0, 3.0, 2.0])  # per cluster; per entry 1, 1, 3, 3, 3, 2: mean 13/6
    norms = filter_norms(model, templates)
    none = torch.zeros(6, dtype=torch.bool)
    for entries, gone, threshold in [(3, [0, 1, 5], 2 / (13 / 6)), (4, [0, 1, 3, 5], 3 / (13 / 6))]:
        target = removing(templates, entries)
        keep, score, by_score, tau = cut_clusters(templates, clusters, effect, norms, none, target)
        assert (~keep).nonzero().flatten().tolist() == gone, entries
        assert tau == pytest.approx(threshold)
        assert torch.allclose(score, effect[clusters] / (13 / 6))
        assert (score[~keep] <= tau).all() and (score[keep & (score < tau)]).numel() == 0
        assert templates.kept_macs(keep) <= templates.budget(target)  # the target holds ...
        for back in gone:  # ... and not one entry more than it needs is removed
            assert templates.kept_macs(keep | (torch.arange(6) == back)) > templates.budget(target)
    # entries the first pruning removed go before any cluster, and leave the clusters' mean
    first = torch.tensor([False, False, False, False, True, False])
    keep, score, _, tau = cut_clusters(templates, clusters, effect, norms, first, removing(templates, 3))
    assert (~keep).nonzero().flatten().tolist() == [0, 1, 4]
    assert score[4] == 0 and tau == pytest.approx(1 / 2)  # alive entries: 1, 1, 3, 3, 2 (mean 2)


def test_each_cluster_is_judged_by_its_squared_summed_template_gradient_without_moving_the_templates():
    model, templates = line([1.0] * 6)
    first = torch.tensor([False, False, False, False, True, False])
    pruner = TcfpPruner(model, templates, 0.3, torch.tensor([0, 0, 1, 1, 1, 2]), first, calibration=[])
    pruner.on_train_start(SimpleNamespace(estimated_stepping_batches=2))  # no module: no calibration pass
    for grad in ([1.0, -1, 2, 0, 5, 1], [0.0, 1, 1, 1, 0, 0]):
        templates.scales[0].grad = torch.tensor(grad)
        pruner.on_before_optimizer_step()
        assert templates.scales[0].grad is None  # so the optimiser leaves the templates alone
    # by hand, entry 4 (first-pruned) left out: cluster 0: 0 then 1; cluster 1: 2 then 2; cluster 2: 1 then 0
    assert pruner.loss_effect().tolist() == [0.5, 4.0, 0.5]


def test_the_method_zeroes_its_first_pruning_for_good_and_its_last_selection_meets_the_target():
    mix = torch.tensor([[1.0, 0, 0], [3, 0, 0], [0, 1, 0], [1, 0.6, 0], [0, 0, 1], [-1, 0, 0], [0, 1, 0.3]])
    fields = torch.stack([bump(3, 4), bump(11, 11), bump(4, 12)])
    batch = {"image": torch.stack([fields, 2 * fields]), "mask": torch.zeros(2, SIDE, SIDE, dtype=torch.long)}
    model = Planted(mix)
    templates = attach_templates(model, batch["image"][:1])
    templates.max_removed = 0.75
    method = create_method("tcfp", {"first_share": 1.0})
    target = removing(templates, 2)
    ctx = PruneContext(model, templates, PruneCfg(), method.options, target, make_loader=lambda: [batch])
    pruner = method.sparsifier(ctx)
    # clusters {0, 1, 3}, {2, 6}, {4}, {5}; each one's largest (1, 6) stays: of the others,
    # 0 and 2 (norm 1) are smaller than 3 (norm 1.17)
    assert pruner.first.nonzero().flatten().tolist() == [0, 2]
    assert templates.scales[0].detach().tolist() == [0.0, 1, 0, 1, 1, 1, 1]
    module = SimpleNamespace(loss=lambda logits, target: logits.square().mean(), _target=lambda mask: mask)
    pruner.on_train_start(SimpleNamespace(estimated_stepping_batches=1), module)
    keep = method.keep(ctx)
    assert (~keep).nonzero().flatten().tolist() == [0, 2]  # the first pruning met the whole target
    # tied on (effect, norm) = (0, 1): the first-pruned 0 and 2, and 5 (-A never fires: no loss effect)
    assert method.calibration_seconds > 0 and method.tied_share == pytest.approx(3 / 7)


def test_a_selection_zeroes_the_filters_of_the_clusters_below_the_threshold_and_leaves_the_others():
    model, templates = line([1.0, 2.0, 3.0, 1.0, 2.0, 5.0])
    dense = model.conv.weight.detach().clone()
    none = torch.zeros(6, dtype=torch.bool)
    pruner = TcfpPruner(model, templates, removing(templates, 3), torch.tensor([0, 0, 1, 1, 1, 2]), none, [])
    pruner.on_train_start(SimpleNamespace(estimated_stepping_batches=2))  # no module: nothing folded yet
    pruner.sums.copy_(torch.tensor([1.0, 3.0, 2.0, 0.0]))  # as if one batch had measured these effects
    pruner.batches = 1
    pruner.on_train_epoch_end(SimpleNamespace(current_epoch=0, max_epochs=2))
    gone = [0, 1, 5]  # clusters 0 (effect 1) and 2 (effect 2): SFP's reset, free to regrow
    assert (~pruner.selection[0]).nonzero().flatten().tolist() == gone
    # (3 was reset at the start, selected then on norms alone: it would regrow in training)
    assert model.conv.weight[gone].abs().sum() == 0 and torch.equal(model.conv.weight[[2, 4]], dense[[2, 4]])
    assert pruner.threshold == pytest.approx(2 / (13 / 6)) and pruner.batches == 0 and pruner.sums.sum() == 0
    assert templates.scales[0].detach().tolist() == [1.0] * 6  # the soft cut leaves the templates alone


def test_the_tied_share_counts_entries_tied_on_both_effect_and_norm():
    model, templates = line([1.0, 2.0, 1.0, 1.0, 2.0, 5.0])  # planted: entries 0 and 2, same cluster, same norm
    none = torch.zeros(6, dtype=torch.bool)
    pruner = TcfpPruner(model, templates, removing(templates, 3), torch.tensor([0, 0, 0, 1, 1, 2]), none, [])
    pruner.on_train_start(SimpleNamespace(estimated_stepping_batches=2))
    pruner.sums.copy_(torch.tensor([1.0, 3.0, 2.0, 0.0]))  # cluster effects 1, 3, 2
    pruner.batches = 1
    pruner.on_train_epoch_end(SimpleNamespace(current_epoch=0, max_epochs=2))
    # effects 1 1 1 3 3 2; norms 0 2 0 0 2 5 (the start's selection reset the three smallest filters):
    # 0 and 2 tie on both keys; 1 shares only an effect with them, 3 only a norm
    assert pruner.tied_share == pytest.approx(2 / 6)
