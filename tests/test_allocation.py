"""Per-group normalisation of criteria published with per-layer rates (allocation.py)."""

import torch

from pipeline.pruning.allocation import keep_normalised, normalise_per_group
from pipeline.pruning.templates import attach_templates
from tests.test_pruning import TinyNet


def test_each_group_is_divided_by_its_own_mean_and_inf_passes_through():
    templates = attach_templates(TinyNet().eval(), torch.randn(1, 3, 16, 16))
    first, second = templates.groups[:2]
    scores = torch.ones(templates.entries)
    scores[first.offset : first.offset + first.size] = torch.arange(1, first.size + 1).float() * 100
    scores[second.offset] = torch.inf
    normalised = normalise_per_group(templates, scores)
    part = normalised[first.offset : first.offset + first.size]
    assert torch.allclose(part.mean(), torch.tensor(1.0))
    assert torch.isinf(normalised[second.offset])
    assert torch.allclose(normalised[second.offset + 1 : second.offset + second.size], torch.ones(second.size - 1))


def test_a_layer_with_large_raw_scores_is_not_spared_by_its_scale():
    templates = attach_templates(TinyNet().eval(), torch.randn(1, 3, 16, 16))
    scores = torch.rand(templates.entries, generator=torch.Generator().manual_seed(0)) + 0.5
    big = templates.groups[0]
    scores[big.offset : big.offset + big.size] *= 1000  # raw: this group would keep every channel
    keep, normalised, _ = keep_normalised(templates, scores, 0.5)
    assert not keep[big.offset : big.offset + big.size].all()
    assert templates.kept_macs(keep) <= templates.budget(0.5) + 1e-6
