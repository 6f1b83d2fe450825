"""The sparse-training baselines: Torch-Pruning's regularisers act on the model's own weights
(bn_l1 shrinks BN γ, group_l2 the group norms, against the same steps without them), see
every group despite the templates' hooks, and group_l2's sync-free gradient is
Torch-Pruning's own."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from pipeline.config import PruneCfg
from pipeline.pruning.method import PruneContext
from pipeline.pruning.registry import create_method
from pipeline.pruning.regularizers import build_pruner
from pipeline.pruning.templates import attach_templates
from tests.test_pruning import TinyNet, smp_model

pytestmark = pytest.mark.usefixtures("one_thread")


def train_steps(method: str | None, steps: int = 5, reg: float = 0.05) -> tuple[nn.Module, list]:
    """A TinyNet trained `steps` SGD steps on fixed data, with `method`'s regulariser hooked
    where Lightning hooks it (None: no regulariser); the model and its template groups."""
    torch.manual_seed(0)
    model = TinyNet()
    templates = attach_templates(model, torch.randn(1, 3, 16, 16))
    callback = None
    if method is not None:
        chosen = create_method(method, {"reg": reg})
        callback = chosen.sparsifier(PruneContext(model, templates, PruneCfg(), chosen.options, 0.5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    image, target = torch.randn(4, 3, 16, 16), torch.randn(4, 1, 16, 16)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(image), target).backward()
        if callback is not None:
            callback.on_before_optimizer_step()
        optimizer.step()
    return model, templates


def bn_l1_norm(model: nn.Module) -> float:
    return sum(float(m.weight.detach().abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def group_norms(model: nn.Module, templates) -> float:
    """Sum over the template groups of each channel's L2 norm over its group."""
    importance = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None, group_reduction="sum")
    total = 0.0
    for g in templates.groups:
        root = model.get_submodule(g.name)
        group = templates.dg.get_pruning_group(root, templates.dg.get_pruner_of_module(root).prune_out_channels,
                                               list(range(g.size)))
        total += float(importance(group).sqrt().sum())
    return total


def test_bn_l1_shrinks_the_bn_scales_of_the_model_itself():
    plain, _ = train_steps(None)
    slim, templates = train_steps("bn_l1")
    assert bn_l1_norm(slim) < bn_l1_norm(plain) - 0.5  # 5 steps of lr·reg = 0.005 on each of 28 γ: 0.7
    assert all(not p.requires_grad and torch.equal(p, torch.ones_like(p)) for p in templates.scales)


def test_group_l2_shrinks_the_group_norms():
    plain, lasso = train_steps(None), train_steps("group_l2")
    assert group_norms(*lasso) < 0.95 * group_norms(*plain)  # measured: 25.8 against 29.6


@pytest.mark.parametrize(("arch", "encoder"), [("Unet", "resnet18"), ("DeepLabV3Plus", "mobilenet_v2")])
def test_group_l2_adds_torch_pruning_s_gradient_on_every_group_despite_the_templates(arch, encoder):
    model, x = smp_model(arch, encoder), torch.randn(2, 3, 64, 64)
    reference = tp.pruner.GroupNormPruner(model, x[:1], tp.importance.GroupMagnitudeImportance(p=2), reg=0.01,
                                          ignored_layers=[model.segmentation_head])  # traced before the templates
    templates = attach_templates(model, x[:1])
    # trainable templates' hooks hide the groups from a trace (a tiny Unet: 1 group of 22)
    assert len(build_pruner("group_l2", model, templates, 0.01)._groups) == len(reference._groups)
    chosen = create_method("group_l2", {"reg": 0.01})
    callback = chosen.sparsifier(PruneContext(model, templates, PruneCfg(), chosen.options, 0.5))
    assert len(callback.pruner._groups) == len(reference._groups) > 10
    model.train()
    model(x).square().mean().backward()
    task = {name: p.grad.clone() for name, p in model.named_parameters()}

    def added(regularize) -> dict[str, torch.Tensor]:
        for name, p in model.named_parameters():
            p.grad.copy_(task[name])
        regularize()
        return {name: p.grad - task[name] for name, p in model.named_parameters()}

    ours, theirs = added(callback.on_before_optimizer_step), added(lambda: reference.regularize(model))
    assert sum(bool(d.abs().max() > 0) for d in theirs.values()) > 20
    for name, d in theirs.items():
        assert torch.allclose(ours[name], d, rtol=1e-4, atol=1e-4 * float(d.abs().max())), name

