"""Feature templates and HQS-L0: z-step, λ bisection, continuation, exact fold-and-remove
on smp models, and the MAC target met by the physically pruned model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.artifact import load_model, save_model
from pipeline.config import ModelCfg
from pipeline.measure import macs_and_params
from pipeline.models import create_model
from pipeline.pruning.hqs_l0 import HqsL0, geometric, hard_threshold, lambda_for_target, proximal
from pipeline.pruning.removal import fold_and_remove, removed_channels
from pipeline.pruning.templates import Templates, attach_templates, round_keep

SIZE = 64
NARROW = {  # narrow decoders keep the smp models fast; FPN's GroupNorm needs multiples of 32
    "Unet": {"decoder_channels": [32, 16, 8, 8, 8]},
    "FPN": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    "DeepLabV3Plus": {"decoder_channels": 32},
}


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """A residual add, a depthwise conv without BN and a skip concatenation, in 5 layers."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Sequential(nn.Conv2d(8, 12, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.segmentation_head = nn.Conv2d(20, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        r = torch.relu(a + self.block(a))
        return self.segmentation_head(torch.cat([r, self.pw(self.dw(r))], 1))


def smp_model(arch: str, encoder: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelCfg(arch=arch, encoder=encoder, decoder={arch: NARROW[arch]})).eval()


@torch.no_grad()
def randomise(model: nn.Module, templates: Templates, low: float = 0.5, high: float = 1.5) -> None:
    """Random BN statistics and affine parameters, templates uniform in [low, high]: folding
    bugs (a missed β, a wrong axis, a template applied twice) cannot hide behind ones and zeros."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5).mul_(torch.randint(0, 2, m.weight.shape) * 2 - 1)
            m.bias.uniform_(-0.5, 0.5)
    for p in templates.scales:
        p.uniform_(low, high)


@torch.no_grad()
def set_templates(templates: Templates, flat: torch.Tensor) -> None:
    for p, values in zip(templates.scales, templates.split(flat).values(), strict=True):
        p.copy_(values)


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def group_kinds(model: nn.Module, templates: Templates) -> dict[str, list[int]]:
    """Indices of residual (two convs write the same channels), concatenation (channels at an
    offset) and depthwise groups."""
    kinds: dict[str, list[int]] = {"residual": [], "concat": [], "depthwise": []}
    for i, g in enumerate(templates.groups):
        layers = {m.name: model.get_submodule(m.name) for m in g.members}
        writers = [m.root.tolist() for m in g.members
                   if m.dim == "out" and isinstance(layers[m.name], nn.Conv2d) and layers[m.name].groups == 1]
        if any(writers.count(w) > 1 for w in writers):
            kinds["residual"].append(i)
        if any(not torch.equal(m.idx, m.root) for m in g.members):
            kinds["concat"].append(i)
        if any(isinstance(layer, nn.Conv2d) and layer.groups > 1 for layer in layers.values()):
            kinds["depthwise"].append(i)
    return kinds


# --- 1. the z-step ---------------------------------------------------------------------------


def test_z_step_keeps_an_entry_when_its_square_beats_twice_lambda_cost_over_mu():
    s, cost = torch.tensor([0.9, 0.2, 0.5]), torch.tensor([1.0, 1.0, 4.0])
    # λ=0.05, μ=1: thresholds 2λc/μ = [0.1, 0.1, 0.4] against s² = [0.81, 0.04, 0.25]
    assert torch.equal(hard_threshold(s, cost, lam=0.05, mu=1.0), torch.tensor([0.9, 0.0, 0.0]))
    # stiffer coupling, μ=2: thresholds [0.05, 0.05, 0.2]; the costly 0.5 now pays its way
    assert torch.equal(hard_threshold(s, cost, lam=0.05, mu=2.0), torch.tensor([0.9, 0.0, 0.5]))
    # with equal costs 0.5 is cheap enough at μ=1; signs are kept as they are
    assert torch.equal(hard_threshold(-s, torch.ones(3), lam=0.05, mu=1.0), torch.tensor([-0.9, 0.0, -0.5]))
    # the decision reads the effective scale (here 5·0.2 = 1), z keeps the template's value
    z = hard_threshold(s, cost, lam=0.05, mu=1.0, scale=torch.tensor([1.0, 5.0, 1.0]))
    assert torch.equal(z, torch.tensor([0.9, 0.2, 0.0]))


# --- 2. λ by bisection -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_bisection_finds_the_smallest_lambda_that_meets_the_budget(seed):
    gen = torch.Generator().manual_seed(seed)
    score, cost = torch.rand(200, generator=gen), torch.randint(1, 50, (200,), generator=gen).float()
    mu, budget = 3.0, 0.4 * float(cost.sum())

    def kept(keep: torch.Tensor) -> float:
        return float(cost[keep].sum())

    lam = lambda_for_target(score, cost, mu, kept, budget)
    keep = hard_threshold(score, cost, lam, mu) != 0
    assert kept(keep) <= budget
    # within one entry of the budget: the next entry that would come back no longer fits
    dropped = ~keep
    closest = torch.argmax(torch.where(dropped, score.pow(2) / cost, -1.0))
    assert kept(keep) + float(cost[closest]) > budget
    assert budget - kept(keep) < float(cost.max())


def test_bisection_edges_keep_everything_or_drop_everything_it_can():
    score, cost = torch.tensor([0.5, 1.0, 2.0]), torch.ones(3)

    def kept(keep: torch.Tensor) -> float:
        return float(cost[keep].sum())

    assert lambda_for_target(score, cost, 1.0, kept, budget=10.0) == 0.0
    lam = lambda_for_target(score, cost, 1.0, kept, budget=-1.0)  # unreachable: drop all
    assert not (hard_threshold(score, cost, lam, 1.0) != 0).any()


# --- 3. proximal continuation ----------------------------------------------------------------


@pytest.mark.parametrize("final", [1e3, 1e-3])
def test_continuation_drives_zeroed_entries_to_zero_and_leaves_the_others(final):
    optimum = torch.tensor([1.0, -0.8, 0.5, 0.3, 0.9])
    z = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.9])  # the z-step dropped entries 1 and 3
    s = nn.Parameter(torch.ones(5))
    lr, steps = 0.1, 300
    optimiser = torch.optim.SGD([s], lr=lr)
    for step in range(steps):
        optimiser.zero_grad()
        (0.5 * (s - optimum).pow(2).sum()).backward()  # the task pulls s to its optimum
        optimiser.step()
        with torch.no_grad():
            s.copy_(proximal(s, z, geometric(step / steps, 1e-3, final)))
    kept = z != 0
    assert torch.allclose(s[kept], optimum[kept], atol=1e-4)
    if final > 1:
        assert s[~kept].abs().max() < 1e-3
    else:  # without continuation to a stiff coupling the task wins: the check above has teeth
        assert s[~kept].abs().min() > 0.1


def test_stiffness_grows_geometrically_to_the_final_value():
    assert geometric(0, 1e-3, 1.0) == pytest.approx(1e-3)
    assert geometric(0.5, 1e-3, 1.0) == pytest.approx(10 ** -1.5)
    assert geometric(2.0, 1e-3, 1.0) == pytest.approx(1.0)


# --- templates on a tiny net: neutral at 1, costs, gauge, legal keep masks --------------------


def test_templates_at_one_change_nothing_and_tracing_leaves_bn_statistics():
    torch.manual_seed(0)
    model, x = TinyNet().eval(), torch.randn(2, 3, 16, 16)
    before, stats = model(x), model.stem[1].running_mean.clone()
    model.train()
    templates = attach_templates(model, x[:1])
    assert model.training and torch.equal(model.stem[1].running_mean, stats)
    assert torch.allclose(model.eval()(x), before)
    # stem+block+dw share a residual group; pw's own group feeds the head at an offset
    assert sorted(g.size for g in templates.groups) == [8, 12]
    assert set(templates.sites) == {"stem.1", "block.1", "dw", "pw.1"}  # convs into BNs are not sites
    assert not any(p is q for p in templates.parameters() for q in model.parameters())


def test_cost_per_entry_is_what_removing_that_entry_alone_saves():
    torch.manual_seed(0)
    templates = attach_templates(TinyNet().eval(), torch.randn(1, 3, 16, 16))
    for j in range(templates.entries):
        keep = torch.ones(templates.entries, dtype=torch.bool)
        keep[j] = False
        assert templates.cost[j] == pytest.approx(templates.dense_modelled - templates.kept_macs(keep))
    assert templates.dense_modelled <= templates.dense_macs  # ReLUs etc. are counted, not modelled


def test_effective_scale_cannot_be_gamed_by_moving_scale_into_bn():
    torch.manual_seed(0)
    model, x = TinyNet().eval(), torch.randn(1, 3, 16, 16)
    templates = attach_templates(model, x)
    randomise(model, templates)
    before, y = templates.effective_scale(), model(x)
    keep = HqsL0(templates, reduction=0.3, steps=1, lr=1.0).keep
    group = next(g for g in templates.groups if g.name == "pw.0")
    with torch.no_grad():  # the pw channels: s ← s/10 and γ, β ← 10·γ, 10·β compute the same
        templates.scales[templates.groups.index(group)].div_(10)
        model.pw[1].weight.mul_(10)
        model.pw[1].bias.mul_(10)
    assert torch.allclose(model(x), y, atol=1e-5)
    assert torch.allclose(templates.effective_scale(), before, rtol=1e-5)
    assert torch.equal(HqsL0(templates, reduction=0.3, steps=1, lr=1.0).keep, keep)


def test_round_keep_keeps_one_per_group_and_rounds_up_by_score():
    keep = torch.tensor([False] * 4 + [True, False, False, True, False, False])
    scores = torch.tensor([0.1, 0.4, 0.2, 0.3, 1.0, 0.9, 0.1, 0.8, 0.7, 0.2])
    assert round_keep(keep, scores, [4, 6]).tolist() == [False, True, False, False] + keep[4:].tolist()
    rounded = round_keep(keep, scores, [4, 6], round_to=4)
    assert rounded[:4].all()  # a group smaller than round_to stays whole
    assert rounded[4:].tolist() == [True, True, False, True, True, False]  # 2 kept -> 4, best first


# --- 4. physically pruned == template-masked ---------------------------------------------------

COMBOS = [(arch, enc) for arch in ("Unet", "FPN", "DeepLabV3Plus") for enc in ("resnet18", "mobilenet_v2")]


@pytest.mark.parametrize(("arch", "encoder"), COMBOS)
def test_pruned_model_equals_the_template_masked_model(arch, encoder):
    model, x = smp_model(arch, encoder), torch.randn(1, 3, SIZE, SIZE)
    dense_macs, _ = macs_and_params(model, SIZE)
    templates = attach_templates(model, x)
    torch.manual_seed(1)
    randomise(model, templates)
    keep = round_keep(torch.rand(templates.entries) > 0.4, torch.rand(templates.entries),
                      [g.size for g in templates.groups])
    kinds = group_kinds(model, templates)
    expected = {"residual"} | ({"depthwise"} if "mobilenet" in encoder or arch == "DeepLabV3Plus" else set()) | (
        {"concat"} if arch != "FPN" else set())
    for kind in expected:
        entries = torch.cat([templates.split(keep)[templates.groups[i].name] for i in kinds[kind]])
        assert len(entries) and (~entries).float().mean() >= 0.3, kind
    set_templates(templates, torch.where(keep, templates.flat().detach(), 0.0))
    with torch.no_grad():
        masked = model(x)
    assert masked.abs().max() > 1e-2  # a dead output would hide any difference

    pruned = fold_and_remove(model, templates, templates.split(keep))
    with torch.no_grad():
        out = pruned(x)
    assert (out - masked).abs().max() <= 1e-4
    assert hooks_left(pruned) == 0
    assert macs_and_params(pruned, SIZE)[0] < dense_macs
    assert pruned.segmentation_head[0].out_channels == 1
    assert all(m.num_channels == 32 for m in pruned.modules() if isinstance(m, nn.GroupNorm))


# --- 5. the MAC target, measured ---------------------------------------------------------------


@pytest.mark.parametrize(("arch", "encoder"), [("Unet", "resnet18"), ("DeepLabV3Plus", "mobilenet_v2")])
def test_bisection_masks_meet_the_mac_target_on_the_pruned_model(arch, encoder):
    model, x = smp_model(arch, encoder), torch.randn(1, 3, SIZE, SIZE)
    dense_macs, _ = macs_and_params(model, SIZE)
    templates = attach_templates(model, x)
    torch.manual_seed(2)
    randomise(model, templates, low=0.01, high=1.5)
    hqs = HqsL0(templates, reduction=0.5, steps=100, lr=0.01)
    pruned = fold_and_remove(model, templates, hqs.keep_masks())
    macs, _ = macs_and_params(pruned, SIZE)
    assert abs((1 - macs / dense_macs) - 0.5) <= 0.02
    assert abs(hqs.predicted_macs() - macs) / dense_macs <= 0.02


# --- the loop: z-steps, proximal steps, removal ------------------------------------------------


def test_hqs_loop_shrinks_dropped_templates_so_removal_is_nearly_lossless():
    torch.manual_seed(0)
    model, x = TinyNet(), torch.randn(4, 3, 16, 16)
    target = torch.randn(4, 1, 16, 16)
    templates = attach_templates(model, x[:1])
    steps, lr = 60, 0.05
    hqs = HqsL0(templates, reduction=0.4, steps=steps, lr=lr, final_stiffness=50.0)
    optimiser = torch.optim.SGD([*model.parameters(), *templates.parameters()], lr=lr)
    for step in range(steps):
        optimiser.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        optimiser.step()
        hqs.proximal(lr)
        if step % 10 == 9 and step < steps - 10:
            hqs.z_step()
    assert hqs.progress == 1.0 and hqs.stiffness() == pytest.approx(50.0)
    dropped = ~hqs.keep
    assert dropped.any() and templates.flat()[dropped].abs().max() < 1e-3
    assert hqs.predicted_macs() <= 0.6 * templates.dense_macs + templates.cost.max()
    model.eval()
    with torch.no_grad():
        before = model(x)
    pruned = fold_and_remove(model, templates, hqs.keep_masks())
    with torch.no_grad():
        assert (pruned(x) - before).abs().max() < 1e-2


# --- artifacts ---------------------------------------------------------------------------------


def test_a_pruned_model_saves_as_channels_and_tensors_and_loads_back(tmp_path):
    cfg = ModelCfg(arch="Unet", encoder="resnet18", decoder={"Unet": NARROW["Unet"]})
    torch.manual_seed(0)
    model, x = create_model(cfg).eval(), torch.randn(1, 3, SIZE, SIZE)
    templates = attach_templates(model, x)
    randomise(model, templates)
    keep = templates.split(round_keep(torch.rand(templates.entries) > 0.5, torch.rand(templates.entries),
                                      [g.size for g in templates.groups]))
    pruned = fold_and_remove(model, templates, keep)
    save_model(pruned, tmp_path, {"model": cfg.model_dump(), "num_classes": 2,
                                  "pruned_channels": removed_channels(keep)})
    loaded, card = load_model(tmp_path)
    assert card.pruned_channels == removed_channels(keep)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), pruned.eval()(x))


# --- the coupling's metric and the layer limit ---------------------------------------------------


def test_z_step_in_the_fisher_metric_keeps_the_entries_the_loss_needs():
    torch.manual_seed(0)
    model = TinyNet()
    templates = attach_templates(model, torch.randn(1, 3, 16, 16))
    hqs = HqsL0(templates, reduction=0.3, steps=10, lr=0.01)
    by_magnitude = hqs.keep.clone()
    grad = torch.zeros(templates.entries)
    grad[~by_magnitude] = 1.0  # the loss now leans on exactly the entries magnitude would drop
    grad[by_magnitude] = 1e-3
    for _ in range(3):
        hqs.observe(grad)
    assert torch.allclose(hqs.fisher.float(), grad.pow(2))  # a steady gradient: the EMA is its square
    hqs.z_step()
    assert (hqs.keep & ~by_magnitude).any()  # entries the loss needs are taken back in
    assert hqs.predicted_macs() <= 0.7 * templates.dense_macs + templates.cost.max()


def test_round_keep_removes_at_most_the_allowed_share_of_a_group():
    keep, scores = torch.zeros(12, dtype=torch.bool), torch.arange(12.0)
    limited = round_keep(keep, scores, [8, 4], max_removed=0.75)
    assert limited[:8].sum() == 2 and limited[8:].sum() == 1  # ceil(25 % of 8), ceil(25 % of 4)
    assert limited[6:8].all()  # the highest scores come back
