"""How a per-channel criterion becomes a keep decision under a MAC target, for criteria that
were published with per-layer rates (SFP, FPGM, HRank, CHIP and the seed theses' variants).

Their raw scores are not comparable across layers (a filter norm grows with the layer's
fan-in, a feature-map rank with its resolution), so a global cut on raw scores would empty
whole layers. They are ranked globally after normalising each dependency group's scores by
the group's mean, Torch-Pruning's `normalizer="mean"` (what `GroupMagnitudeImportance` does
by default), and cut by `decide_by_score` within the templates' rules (`max_layer_pruning`,
`round_to`, a layer's last channel).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.pruning.hqs_l0 import decide_by_score
from pipeline.pruning.templates import Templates


def normalise_per_group(templates: Templates, scores: Tensor) -> Tensor:
    """Each group's scores divided by the group's mean score (a group of zeros stays zero);
    +inf (entries a criterion cannot judge, so keeps) passes through and is left out of the mean."""
    scores = scores.detach().float().cpu()
    parts = {}
    for name, part in templates.split(scores).items():
        finite = part[torch.isfinite(part)]
        mean = finite.abs().mean() if len(finite) else torch.tensor(1.0)
        parts[name] = part / mean if mean > 0 else part
    return templates.join(parts)


def keep_normalised(templates: Templates, scores: Tensor, reduction: float) -> tuple[Tensor, Tensor, Tensor]:
    """(keep mask, the normalised scores it was decided on, the entries the score itself kept)."""
    normalised = normalise_per_group(templates, scores)
    keep, by_score = decide_by_score(templates, normalised, reduction)
    return keep, normalised, by_score
