"""The model card: what `model.json` says of a model, typed and validated on load.

Only `model` (the smp architecture) and `num_classes` describe the network; every other
field is optional, so a user's own checkpoint needs no more than
`{"model": {"arch": "Unet", "encoder": "resnet18"}, "num_classes": 2}`. Later stages add
their fields here, never as free-form keys (a misspelt key is an error, not a silent default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import ModelCfg, TrainCfg

# The input smp's encoders expect: ImageNet statistics over RGB values scaled to [0, 1].
NORMALISATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class Normalisation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)


class TrainingData(BaseModel):
    """The data a model was trained on: the prepared data set's manifest in brief."""

    model_config = ConfigDict(extra="forbid")

    source: str  # prepare.source: synthetic, pld-uav, ttpla, folder, geotiff
    root: str | None = None  # the source folder (for synthetic: the generator)
    images: dict[str, int] = Field(default_factory=dict)  # per split
    split_file: str | None = None  # the fixed split it used, if any

    @classmethod
    def read(cls, prepared: Path) -> TrainingData:
        """From a prepared data folder's manifest.json."""
        manifest = json.loads((Path(prepared) / "manifest.json").read_text())
        return cls(source=manifest["source"], root=manifest.get("root"), split_file=manifest.get("split_file"),
                   images={name: split["images"] for name, split in manifest.get("splits", {}).items()})

    @property
    def synthetic(self) -> bool:
        """Whether every training image was drawn by the generator (no real labelled wire)."""
        return self.source == "synthetic"


class ModelCard(BaseModel):
    """model.json. `pruned_channels` ({group root conv: removed channel indices}) makes a
    pruned model: loading rebuilds the dense network and removes those channels."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: ModelCfg
    num_classes: int = Field(2, ge=2, le=3)
    normalisation: Normalisation = Normalisation(**NORMALISATION)
    threshold: float = Field(0.5, ge=0, le=1)  # tuned on val: maximises val F1
    metrics: dict[str, float] = Field(default_factory=dict)
    train: TrainCfg | None = None  # the training config the weights came from
    cost_size: int = Field(256, ge=32)  # MACs and params are counted on cost_size^2
    variant: str | None = None  # the study option that won
    method: str | None = None  # pruning method
    macs_reduction: float | None = None  # its MAC target
    sparsify_epochs: int = Field(0, ge=0)  # epochs trained before removal
    budget_epochs: int = Field(0, ge=0)  # epochs every method of the sweep may train before fine-tuning
    finetune_epochs: int | None = None
    pruned_channels: dict[str, list[int]] = Field(default_factory=dict)
    training_data: TrainingData | None = None
    # the shipped model's card (the pick stage) adds these
    commit: str | None = None  # git commit of the code that chose it
    created: str | None = None  # UTC date and time, ISO 8601
    input_size: list[int] | None = None  # [height, width] it was evaluated at (any multiple of 32 runs)
    intervals: dict[str, list[float]] = Field(default_factory=dict)  # metric: 95 % interval over test images
    intended_use: str | None = None
    limits: list[str] = Field(default_factory=list)

    def updated(self, **fields: Any) -> ModelCard:
        """A copy with `fields` changed, validated like a freshly loaded card."""
        return ModelCard.model_validate({**self.model_dump(), **fields})

    def to_json(self) -> dict[str, Any]:
        """What model.json holds: unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)
