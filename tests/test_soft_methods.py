"""SFP, soft and smooth filter pruning, its clustering hybrid and FPGM on toy groups whose
outcome is known by hand: a reset filter that regrows, the decay step by step, a planted
duplicate with a large norm, the filter nearest the geometric median."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipeline.config import PruneCfg
from pipeline.pruning.filters import FpgmMethod, duplicates_in, filter_norms, group_filters, select_by_norm
from pipeline.pruning.method import NoOptions, PruneContext
from pipeline.pruning.soft import GeometricDecay, ResetToZero, SoftPruner
from pipeline.pruning.templates import Templates, attach_templates
from tests.test_pruning import TinyNet

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = 0.2  # on TinyNet: removes channels of both groups (the residual "dw" one and "pw.0")
RESIDUAL = ("stem.0", "block.0", "dw")  # the convs whose filters make the "dw" group's filters


def tiny() -> tuple[TinyNet, Templates]:
    torch.manual_seed(0)
    model = TinyNet()
    templates = attach_templates(model, torch.zeros(1, 3, 16, 16))
    templates.max_removed = 0.75
    return model, templates


def trainer(steps: int, epoch: int = 0, epochs: int = 3) -> SimpleNamespace:
    """What the callback reads of a Lightning trainer."""
    return SimpleNamespace(estimated_stepping_batches=steps, current_epoch=epoch, max_epochs=epochs)


def removed_residual_channels(pruner: SoftPruner, templates: Templates) -> list[int]:
    """The channels of the "dw" group the pruner's last selection removes."""
    return (~templates.split(pruner.selection[0])["dw"]).nonzero().flatten().tolist()


def test_a_filter_sfp_zeroed_comes_back_and_is_not_selected_again_once_it_is_no_longer_lowest():
    model, templates = tiny()
    with torch.no_grad():
        model.stem[1].bias.fill_(0.5)  # the channels' BN shift clears the ReLU: gradient can reach a reset filter
    pruner = SoftPruner(model, templates, TARGET, ResetToZero())
    pruner.on_train_start(trainer(4))
    channel = removed_residual_channels(pruner, templates)[0]
    entry = templates.groups[1].offset + channel
    assert all(model.get_submodule(conv).weight[channel].abs().sum() == 0 for conv in RESIDUAL)
    assert filter_norms(model, templates)[entry] == 0
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model(torch.randn(2, 3, 16, 16)).square().mean().backward()
    optimizer.step()
    regrown = filter_norms(model, templates)
    assert regrown[entry] > 0  # the reset filter trained on
    with torch.no_grad():  # as if it had kept regrowing: now the group's largest filter
        for conv in RESIDUAL:
            model.get_submodule(conv).weight[channel] *= 10 * float(regrown.max() / regrown[entry])
    pruner.on_train_epoch_end(trainer(4, epoch=0))
    assert channel not in removed_residual_channels(pruner, templates)
    assert removed_residual_channels(pruner, templates)  # another filter of the group went in its place


def test_ssfp_decays_the_selected_channels_step_by_step_and_zeroes_the_last_selection():
    model, templates = tiny()
    with torch.no_grad():
        model.stem[1].running_mean.uniform_(-1, 1)
        model.stem[1].running_var.uniform_(0.5, 2)
        model.stem[1].bias.uniform_(-1, 1)
    pruner = SoftPruner(model, templates, TARGET, GeometricDecay(decay_to=0.25))
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    pruner.on_train_start(trainer(steps=2))  # 0.25 over 2 steps: x0.5 per step
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())  # selecting alone changes nothing
    removed = removed_residual_channels(pruner, templates)
    kept = [c for c in range(8) if c not in removed]
    assert removed and kept
    for factor in (0.5, 0.25):
        pruner.on_train_batch_end()
        now = model.state_dict()
        for key in (
            "stem.0.weight",
            "stem.0.bias",
            "block.0.weight",
            "dw.weight",
            "dw.bias",
            "stem.1.weight",
            "stem.1.bias",
            "stem.1.running_mean",
            "block.1.weight",
        ):
            assert torch.allclose(now[key][removed], factor * dense[key][removed]), key
            assert torch.equal(now[key][kept], dense[key][kept]), key
        assert torch.allclose(now["stem.1.running_var"][removed], factor**2 * dense["stem.1.running_var"][removed])
    pruner.on_train_epoch_end(trainer(steps=2, epoch=2, epochs=3))  # the last epoch: reset to zero
    assert removed_residual_channels(pruner, templates) == removed
    assert model.stem[0].weight[removed].abs().sum() == 0 and model.dw.weight[removed].abs().sum() == 0
    assert torch.allclose(model.stem[1].weight[removed], 0.25 * dense["stem.1.weight"][removed])  # BN left at a reset


def test_cluster_ssfp_selects_a_planted_duplicate_with_a_large_norm():
    model, templates = tiny()
    with torch.no_grad():
        large = 3 * model.pw[0].weight[5]
        model.pw[0].weight[2] = large
        model.pw[0].weight[7] = 1.02 * large  # its near-duplicate, a little larger: the one kept
    filters = group_filters(model, templates.groups[0])
    assert duplicates_in(filters, 0.2).nonzero().flatten().tolist() == [2]
    norms = filters.norm(dim=1)
    assert norms[2] > 2 * norms.median()  # by its norm alone it is far from going
    by_norm, _, _ = select_by_norm(model, templates, TARGET)
    with_duplicates, scores, _ = select_by_norm(model, templates, TARGET, duplicate_distance=0.2)
    assert by_norm[2] and by_norm[7]
    assert not with_duplicates[2] and with_duplicates[7]
    assert (~with_duplicates).sum() == (~by_norm).sum()  # the duplicate takes a small filter's place
    assert scores[2] < scores[torch.arange(len(scores)) != 2].min()  # it is ranked first to go


class Line(nn.Module):
    """One prunable group: a conv of 5 filters and its BN."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 5, 1), nn.BatchNorm2d(5)
        self.segmentation_head = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(torch.relu(self.bn(self.conv(x))))


def test_fpgm_removes_the_filter_nearest_the_geometric_median():
    model = Line()
    positions = torch.tensor([3.0, 10.0, 0.0, 2.0, 1.0])  # filters on one line: filter i = positions[i]·u
    unit = torch.ones(3) / 3**0.5
    with torch.no_grad():
        model.conv.weight.copy_((positions[:, None] * unit).view(5, 3, 1, 1))
    templates = attach_templates(model, torch.zeros(1, 3, 8, 8))
    # summed distances to the others, by hand: |3-10|+|3-0|+|3-2|+|3-1| = 13, and so on
    by_hand = torch.tensor([13.0, 34.0, 16.0, 12.0, 13.0])
    target = 0.5 * float(templates.cost[0]) / templates.dense_macs  # one filter has to go
    method = FpgmMethod(NoOptions())
    keep = method.keep(PruneContext(model, templates, PruneCfg(), NoOptions(), target))
    assert torch.allclose(method.decision_scores, by_hand / by_hand.mean())
    assert keep.tolist() == [True, True, True, False, True]  # the median one, not the zero filter (magnitude's pick)


def test_a_resumed_run_keeps_its_checkpointed_selection_and_resets_nothing_again():
    model, templates = tiny()
    first = SoftPruner(model, templates, TARGET, ResetToZero())
    first.on_train_start(trainer(4))
    state = first.state_dict()
    removed = removed_residual_channels(first, templates)
    with torch.no_grad():  # training moved on: the reset filters regrew past the others
        for conv in RESIDUAL:
            model.get_submodule(conv).weight[removed] = 1.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    resumed = SoftPruner(model, templates, TARGET, ResetToZero())
    resumed.load_state_dict(state)
    resumed.on_train_start(trainer(4))
    assert torch.equal(resumed.selection[0], state["keep"])  # not a fresh selection
    assert removed_residual_channels(resumed, templates) == removed
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
