"""The feature-map criteria (hrank, chip, fm_rank_similarity, correlation_independence) on
planted maps whose scores can be worked out by hand, and the maps they are handed."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from pipeline.config import PruneCfg
from pipeline.pruning.feature_maps import find_readers, tied_share, visit_feature_maps
from pipeline.pruning.independence_methods import PixelMoments, nuclear_norm_drops, pixels
from pipeline.pruning.method import PruneContext
from pipeline.pruning.rank_methods import map_correlations, map_ranks
from pipeline.pruning.registry import create_method
from pipeline.pruning.templates import Group, attach_templates
from tests.test_pruning import TinyNet

SIDE = 16  # px of the planted maps

pytestmark = pytest.mark.usefixtures("one_thread")


class PlantedNet(nn.Module):
    """1x1 conv (weights `mix`, no bias) -> BN at identity (-> ReLU if `relu`) -> head: the one
    prunable group's maps are `mix` applied to the input channels, exactly (in eval mode).
    tests/test_tcfp.py uses it with the ReLU."""

    def __init__(self, mix: Tensor, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(mix.shape[1], mix.shape[0], 1, bias=False)
        self.bn = nn.BatchNorm2d(mix.shape[0])
        self.segmentation_head = nn.Conv2d(mix.shape[0], 1, 1)
        self.activation = nn.ReLU() if relu else nn.Identity()
        with torch.no_grad():
            self.conv.weight.copy_(mix[:, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        return self.segmentation_head(self.activation(self.bn(self.conv(x))))


def low_rank(rank: int, generator: torch.Generator) -> Tensor:
    """A SIDE x SIDE Gaussian map of exactly `rank`."""
    return torch.randn(SIDE, rank, generator=generator) @ torch.randn(rank, SIDE, generator=generator) / rank**0.5


def scores(method: str, mix: Tensor, fields, images: int = 4) -> Tensor:
    """The raw scores of `method` on PlantedNet(mix), fed `images` inputs whose channels are
    `fields(generator)` (a list of SIDE x SIDE maps), two images per batch."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.stack([torch.stack(fields(generator)) for _ in range(images)])
    loader = [{"image": batch[i : i + 2]} for i in range(0, images, 2)]
    model = PlantedNet(mix).eval()
    templates = attach_templates(model, batch[:1])
    ctx = PruneContext(model, templates, PruneCfg(), create_method(method).options, 0.5, make_loader=lambda: loader)
    chosen = create_method(method)
    return chosen.scores(ctx, find_readers(model, templates, batch[:1]))


def gaussian_fields(count: int):
    return lambda g: [torch.randn(SIDE, SIDE, generator=g) for _ in range(count)]


def test_map_ranks_of_planted_maps():
    g = torch.Generator().manual_seed(0)
    maps = torch.stack([low_rank(1, g), torch.randn(SIDE, SIDE, generator=g), low_rank(5, g), torch.zeros(SIDE, SIDE)])
    assert map_ranks(maps[None]).tolist() == [[1.0, SIDE, 5.0, 0.0]]


def test_hrank_scores_the_average_rank_of_each_channels_maps():
    # input channels: a rank-1 map, a full-rank one and a rank-1 one; the conv passes channel 0,
    # channel 1, and channel 0 + channel 2 (rank 2)
    mix = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 1]])
    got = scores("hrank", mix, lambda g: [low_rank(1, g), torch.randn(SIDE, SIDE, generator=g), low_rank(1, g)])
    assert got.tolist() == [1.0, SIDE, 2.0]


def test_nuclear_norm_drops_are_chips_definition_on_both_gram_sides():
    g = torch.Generator().manual_seed(0)
    for rows, cols in [(5, 12), (12, 5)]:
        a = torch.randn(rows, cols, generator=g, dtype=torch.float64)
        full = torch.linalg.svdvals(a).sum()
        by_hand = [full - torch.linalg.svdvals(torch.cat([a[:i], a[i + 1 :]])).sum() for i in range(rows)]
        assert torch.allclose(nuclear_norm_drops(a), torch.stack(by_hand), atol=1e-9)


def test_chip_scores_a_combination_of_other_channels_below_an_independent_one():
    # channels: x0, x1, x2, (x1 + x2)/√2: for orthonormal rows the drops are 1 (x0) and √2 - 1
    mix = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 2**-0.5, 2**-0.5]])
    got = scores("chip", mix, gaussian_fields(3)) / SIDE  # a Gaussian map's norm is about SIDE
    assert got[3] < got[0]
    assert got[0] == pytest.approx(1.0, abs=0.15) and got[3] == pytest.approx(2**0.5 - 1, abs=0.15)


def test_map_correlations_are_pearson_not_cosine():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(SIDE, SIDE, generator=g)  # non-negative, as after a ReLU
    maps = torch.stack([x, 2 * x + 1, torch.rand(SIDE, SIDE, generator=g), torch.ones(SIDE, SIDE)])
    got = map_correlations(maps[None])[0]
    assert got[0, 1] == pytest.approx(1.0) and abs(float(got[0, 2])) < 0.2  # cosine: about 0.75
    assert got[3].abs().max() == 0  # a constant map resembles nothing


def test_fm_rank_similarity_drops_the_lower_rank_of_two_alike_maps():
    # x0 full rank; x1 = x0 with its last 3 rows copied from the first (rank SIDE - 3, alike);
    # x2 an unrelated map of rank 8, lower than both: HRank would drop it first
    def fields(g):
        x0 = torch.randn(SIDE, SIDE, generator=g)
        x1 = torch.cat([x0[:-3], x0[:1].repeat(3, 1)])
        return [x0, x1, low_rank(8, g)]

    mix = torch.eye(3)
    similar = scores("fm_rank_similarity", mix, fields)
    assert int(similar.argmin()) == 1 and similar[0] == SIDE
    assert int(scores("hrank", mix, fields).argmin()) == 2


def test_correlation_independence_scores_a_planted_redundant_channel_lowest():
    # channels: x0 .. x3 independent, x4 = (x1 + x2)/√2 replaceable by channels 1 and 2; the
    # scales differ (the entropy is per channel's own range, so they must not matter)
    mix = torch.cat([torch.diag(torch.tensor([5.0, 1, 0.5, 1])), torch.tensor([[0, 2**-0.5, 2**-0.5, 0]])])
    got = scores("correlation_independence", mix, gaussian_fields(4))
    assert got[4] < 0.5 * got[[0, 3]].min()
    # an independent channel keeps about its own entropy: a Gaussian in 32 bins over its range
    assert 3.0 < float(got[0]) < math.log2(32)


def test_the_reconstruction_reproduces_a_combination_and_not_an_independent_map():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, SIDE, SIDE, generator=g) * torch.tensor([1.0, 4, 1, 0.5])[:, None, None, None]
    x[2] = 3 * x[0] + 0.5 * x[1] + 7  # a combination of channels 0 and 1, shifted
    moments = PixelMoments()
    moments.visit(Group("layer", 0, 4, []), x.transpose(0, 1))
    mean, residual = moments.reconstruction("layer", ridge=1e-6)
    flat = pixels(x.transpose(0, 1))
    fitted = flat - residual @ (flat - mean[:, None])
    assert torch.allclose(fitted[2], flat[2], atol=1e-3)  # the others reproduce it
    assert (fitted[3] - mean[3]).std() < 0.2 * flat[3].std()  # the others tell (nearly) nothing about it


def test_feature_maps_are_what_the_last_reader_sees_in_entry_order():
    torch.manual_seed(0)
    model, x = TinyNet(), torch.randn(2, 3, 8, 8)
    templates = attach_templates(model, x[:1])
    statistics = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}
    visit_feature_maps(
        model,
        find_readers(model, templates, x[:1]),
        [{"image": x}],
        lambda group, maps: seen.__setitem__(group.name, maps),
    )
    # read in eval mode, the model's own mode restored: BN statistics untouched
    assert model.training and all(torch.equal(v, statistics[k]) for k, v in model.state_dict().items())
    model.eval()
    a = model.stem(x)
    stream = next(g.name for g in templates.groups if any(m.name == "stem.0" for m in g.members))
    # the residual stream after its add, and the pw layer's output after the skip concatenation
    assert torch.allclose(seen[stream], torch.relu(a + model.block(a)))
    assert torch.allclose(seen["pw.0"], model.pw(model.dw(torch.relu(a + model.block(a)))))


def test_keep_records_its_decision_and_the_tied_share():
    mix = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 1]])
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(2, 3, SIDE, SIDE, generator=generator)
    model = PlantedNet(mix).eval()
    templates = attach_templates(model, batch[:1])
    method = create_method("hrank")
    ctx = PruneContext(model, templates, PruneCfg(), method.options, 0.3, make_loader=lambda: [{"image": batch}])
    keep = method.keep(ctx)
    assert method.decision_scores is not None and method.decided_by_score is not None
    assert method.tied_share == 1.0  # three full-rank maps: one score for all
    assert templates.kept_macs(keep) <= templates.budget(0.3)
    assert tied_share(torch.tensor([1.0, 2.0, 2.0, 3.0])) == 0.5
