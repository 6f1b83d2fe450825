"""Removing channels, and keeping removal honest: `fold_and_remove` turns a template-masked
model into a smaller plain one, and `run.prune` does this around it:

* A MAC target the templates' rules cannot reach stops before any training, naming the
  limit that blocks it (`check_reachable`), and a decision that falls short is refused
  (`check_achieved`).
* Methods that pull their dropped templates onto 0 while training (HQS-L0) leave them near
  0, not at 0 (AdamW's step keeps nudging them), so they are set exactly to 0 before removal
  (`zero_dropped`): the pruned model then computes what the masked one does.
* Other methods remove channels that still carry signal, which shifts the statistics every
  later BatchNorm saw: one pass over the training crops re-estimates them (`recalibrate_bn`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from pipeline.artifact import remove_channels
from pipeline.config import TrainCfg, TrainerCfg
from pipeline.data.datamodule import SegmentationData
from pipeline.errors import PipelineError
from pipeline.module import SegmentationModule
from pipeline.pruning.templates import Templates
from pipeline.selection import SCORE
from pipeline.train import local_metrics

SHORTFALL = 0.01  # a decision may miss the MAC target by this much (rounding), no more


def smallest_legal_macs(templates: Templates) -> float:
    """Modelled MACs left when every entry goes that the templates' rules let go (the entries
    the rules add back are the cheapest ones)."""
    keep = templates.legal(torch.zeros(templates.entries, dtype=torch.bool), -templates.cost)
    return templates.kept_macs(keep)


def largest_reduction(templates: Templates, **rules: object) -> float:
    """The largest share of the whole model's MACs any keep set can remove, with the rules
    (`round_to`, `max_removed`) given here in place of the templates' own."""
    saved = {name: getattr(templates, name) for name in rules}
    try:
        for name, value in rules.items():
            setattr(templates, name, value)
        return (templates.dense_modelled - smallest_legal_macs(templates)) / templates.dense_macs
    finally:
        for name, value in saved.items():
            setattr(templates, name, value)


def check_reachable(templates: Templates, macs_reduction: float) -> None:
    """Raise a one-line PipelineError naming the limit if no keep set cuts `macs_reduction`
    of the MACs. The dominant limit is found by relaxing each rule in turn."""
    best = largest_reduction(templates)
    if best >= macs_reduction:
        return
    head = f"prune: a {macs_reduction:.0%} MAC cut is out of reach: at most {best:.1%} of the MACs can go"
    free = largest_reduction(templates, max_removed=1.0, round_to=None)
    if free < macs_reduction:  # no rule is to blame: too much of the model sits outside the groups
        fixed = templates.kept_macs(torch.zeros(templates.entries, dtype=torch.bool))
        share = (fixed + templates.dense_macs - templates.dense_modelled) / templates.dense_macs
        raise PipelineError(f"{head}, because {share:.0%} sit in layers that cannot be pruned (e.g. attention "
                            f"blocks, normalisation groups, the segmentation head); lower the target or "
                            f"choose a model with more prunable layers")
    layer = largest_reduction(templates, max_removed=1.0)
    rounding = largest_reduction(templates, round_to=None)
    limits = [(layer, f"prune.max_layer_pruning ({templates.max_removed:g}) lets at most that share of a "
                      f"layer's channels go; 1.0 would allow {layer:.1%}"),
              (rounding, f"prune.round_to ({templates.round_to}) keeps channel counts multiples of it; "
                         f"none would allow {rounding:.1%}")]
    reach, why = max(limits, key=lambda item: item[0])
    if reach < macs_reduction:  # neither alone: both together
        why = "prune.max_layer_pruning and prune.round_to together block it"
    raise PipelineError(f"{head}: {why}; relax it or lower the target")


def check_achieved(achieved: float, macs_reduction: float) -> None:
    """Refuse a pruned model whose MACs fell by noticeably less than the target."""
    if achieved < macs_reduction - SHORTFALL:
        raise PipelineError(f"prune: the MACs fell by {achieved:.1%}, short of the {macs_reduction:.0%} target; "
                            f"lower the target or relax prune.max_layer_pruning / prune.round_to")


@torch.no_grad()
def zero_dropped(templates: Templates, keep: Tensor) -> None:
    """Set the templates of the entries not kept (z = 0) exactly to 0."""
    for scale, kept in zip(templates.scales, templates.split(keep).values(), strict=True):
        scale.masked_fill_(~kept.to(scale.device), 0.0)


def _one_device(trainer_cfg: TrainerCfg) -> L.Trainer:
    """A Trainer on this process's one device, for evaluation (as `train.evaluate` makes)."""
    return L.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                     **{**trainer_cfg.model_dump(), "devices": 1, "strategy": "auto", "num_nodes": 1})


def val_score(module: SegmentationModule, data: SegmentationData, trainer_cfg: TrainerCfg) -> float:
    """Val IoU at the F1-optimal threshold, from the val split alone."""
    trainer = _one_device(trainer_cfg)
    with local_metrics(module):
        val = trainer.validate(module, datamodule=data, verbose=False)[0]
    return float(val[SCORE])


def recalibrate_bn(model: nn.Module, data: Path, train: TrainCfg, seed: int, trainer_cfg: TrainerCfg) -> None:
    """Re-estimate every BatchNorm's running statistics (a cumulative average) over one pass
    of the training split's crops, on the device evaluation uses; the model stays where it was."""
    loader = SegmentationData(data, train, seed).train_dataloader()
    device = _one_device(trainer_cfg).strategy.root_device
    home = next(model.parameters()).device
    update_bn((batch["image"] for batch in loader), model.to(device), device)
    model.to(home)


def fold_and_remove(model: nn.Module, templates: Templates, keep: dict[str, Tensor]) -> nn.Module:
    """Fold the templates into the weights, remove the hooks, then physically remove the
    channels with keep=False (made legal by `Templates.legal`) through Torch-Pruning's dependency groups.
    `model` is changed in place and returned: a plain smp model with fewer channels."""
    if templates.model is not model:
        raise ValueError("these templates are attached to another model")
    keep = templates.split(templates.legal(templates.join(keep), templates.effective_scale()))
    templates.fold()
    return remove_channels(model, removed_channels(keep), templates.dg)  # folding left the graph as it was


def removed_channels(keep: dict[str, Tensor]) -> dict[str, list[int]]:
    """{group root: channel indices to remove}, the channel configuration a pruned model is saved with."""
    return {name: (~mask).nonzero().flatten().tolist() for name, mask in keep.items() if not mask.all()}
