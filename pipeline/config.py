"""Schema of params.yaml: one strict model per section, so typos fail with the valid keys
(reading and validating the file: pipeline.params)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.errors import PipelineError
from pipeline.pruning import registry

PAD_MULTIPLE = 32  # every smp encoder downsamples by at most 32: inputs (and scene windows) align to it


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BaseCfg(Strict):
    seed: int = 0
    towers: bool = False  # opt-in third class; otherwise towers are background

    @property
    def num_classes(self) -> int:
        return 3 if self.towers else 2


class SyntheticCfg(Strict):
    n_train: int = Field(96, ge=1, le=1000)  # capped so a synthetic training run fits a CPU
    n_val: int = Field(24, ge=1)
    n_test: int = Field(24, ge=1)
    height: int = Field(192, ge=32)
    width: int = Field(192, ge=32)
    # scenes: procedural top-down scenes (the default); wires: catenaries seen by a UAV camera
    renderer: Literal["scenes", "wires"] = "scenes"
    backgrounds: str | None = None  # wires only: a folder of the user's aerial photos to draw on

    @model_validator(mode="after")
    def _backgrounds_need_wires(self) -> SyntheticCfg:
        if self.backgrounds is not None and self.renderer != "wires":
            raise ValueError("synthetic.backgrounds needs synthetic.renderer: wires")
        return self


class FolderCfg(Strict):
    images: str = "images"
    masks: str = "masks"
    # raw mask value -> class id (e.g. {255: 1} for 0/255 masks); unmapped values must
    # already be class ids or 255 (ignore)
    mask_values: dict[int, int] = Field(default_factory=dict)


class TtplaCfg(Strict):
    line_labels: list[str] = ["cable"]
    tower_labels: list[str] = ["tower_lattice", "tower_tucohy", "tower_wooden"]
    void_labels: list[str] = ["void"]
    max_image_data_mb: float = 64.0  # larger embedded imageData is refused


class GeotiffCfg(Strict):
    image: str = "scene.tif"
    mask: str = "mask.tif"
    tile_size: int = Field(512, ge=32)
    overlap: int = Field(64, ge=0)
    region_size: int = Field(2048, ge=32)  # tiles of one region stay in one split


class PrepareCfg(Strict):
    source: Literal["synthetic", "pld-uav", "ttpla", "folder", "geotiff"] = "synthetic"
    root: str = "pipeline/data/sources/synthetic.py"
    # key -> split JSON; null: the source's own split (pld-uav: data/splits/pldu.json if the ids
    # are its ids) or a random one by val_fraction / test_fraction
    split_file: str | None = None
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    skip_bad: bool = False
    synthetic: SyntheticCfg = SyntheticCfg()
    folder: FolderCfg = FolderCfg()
    ttpla: TtplaCfg = TtplaCfg()
    geotiff: GeotiffCfg = GeotiffCfg()


class ModelCfg(Strict):
    arch: str = "Unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None  # null or a local weights file; never a hub download
    encoder_depth: int = Field(5, ge=3, le=5)
    # decoder options per architecture, passed to smp: {Unet: {decoder_channels: [...]}};
    # keyed by arch so that swapping `arch` never feeds one decoder another's options
    decoder: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def decoder_options(self) -> dict[str, Any]:
        """The options for this arch (case-insensitive), or {} for smp's defaults."""
        by_arch = {name.lower(): options for name, options in self.decoder.items()}
        return by_arch.get(self.arch.lower(), {})


class TrainCfg(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(4, ge=1)
    crop_size: int = Field(128, ge=32)
    line_crop_fraction: float = Field(0.8, ge=0, le=1)  # share of crops forced to hold line pixels
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "none"] = "cosine"
    loss: str = "dice+bce"
    loss_options: dict[str, Any] = Field(default_factory=dict)
    augment: list[dict[str, Any]] = Field(default_factory=list)  # albumentations specs
    early_stopping_patience: int = Field(0, ge=0)  # 0 = off
    num_workers: int = Field(0, ge=0)
    limit_train_batches: int | float | None = None


class TrainerCfg(Strict):
    """Passed through to lightning.Trainer, so GPUs and DDP need no code change."""

    accelerator: str = "cpu"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    deterministic: bool | Literal["warn"] = True  # "warn" on GPUs: some CUDA kernels have no deterministic form
    log_every_n_steps: int = 5
    enable_progress_bar: bool = True
    fast_dev_run: bool | int = False  # a smoke run: n batches per split, no checkpoints


class BaselineCfg(Strict):
    # each candidate overrides keys of `model`, e.g. {arch: FPN, encoder: resnet18}
    candidates: list[dict[str, Any]] = Field(default_factory=lambda: [{}])
    # pick the highest val IoU among candidates within `iou_tolerance` of the best, then
    # the fewest MACs: deterministic figures only (latency is measured by the report, never used)
    iou_tolerance: float = Field(0.02, ge=0)
    cost_size: int = Field(256, ge=32)  # MACs and params are counted on a cost_size^2 input


class StudyCfg(Strict):
    """A study continues training the previous stage's model with each option in turn."""

    compare: list[str] = Field(default_factory=lambda: ["none"], min_length=1)  # names of options to train
    epochs: int = Field(8, ge=1)  # the same budget for every option
    lr: float | None = Field(None, gt=0)  # continued training starts lower than from scratch
    iou_tolerance: float = Field(0.0, ge=0)  # see study.pick

    def train_overrides(self) -> dict[str, Any]:
        """The keys of `train` every option of this study changes."""
        return {"epochs": self.epochs, **({"lr": self.lr} if self.lr else {})}

    def choices(self) -> dict[str, Any]:
        """The named options this study may compare."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _compare_known_options(self) -> StudyCfg:
        unknown = [name for name in self.compare if name not in self.choices()]
        if unknown:
            raise ValueError(f"compare names {unknown} are not defined; defined: {', '.join(self.choices())}")
        return self


class AugmentCfg(StudyCfg):
    # policy name -> albumentations transforms as data: [{name: HorizontalFlip, p: 0.5}, ...]
    policies: dict[str, list[dict[str, Any]]] = Field(default_factory=lambda: {"none": []})

    def choices(self) -> dict[str, Any]:
        return self.policies


class LossCfg(StudyCfg):
    # option name -> {loss: dice+focal, loss_options: {weights: {dice: 1, focal: 1}}}
    options: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"none": {}})  # none: train's own loss

    def choices(self) -> dict[str, Any]:
        return self.options


class PruneCfg(Strict):
    """How `prune` sparsifies; the method and the MAC target come from the sweep (dvc.yaml).

    The keys below are common to every method; each method's own options sit in a block
    named after it (`hqs_l0: {final_stiffness: 10}`), checked by the options class of the
    method (pipeline.pruning.registry); a method without a block runs with its defaults."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())  # extras: the method blocks, checked below

    # training epochs of the methods that train (hqs_l0, bn_l1, ...); one-shot methods get the same
    # number as extra fine-tuning epochs, so every method has the same budget
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-3, gt=0)  # constant during sparsification: the proximal pull uses it
    round_to: int | None = Field(None, ge=1)  # keep channel counts multiples of this (e.g. 8)
    # at most this share of any layer's channels goes: MAC-weighted decisions otherwise empty
    # the costliest (widest, highest-resolution) layers first, which no training recovers from
    max_layer_pruning: float = Field(0.75, gt=0, le=1)

    @model_validator(mode="after")
    def _method_blocks(self) -> PruneCfg:
        extra = self.model_extra if self.model_extra is not None else {}
        for name, block in extra.items():
            extra[name] = registry.check_options(name, block, list(type(self).model_fields))
        return self

    def method_options(self, method: str) -> dict[str, Any]:
        """The options block of `method` (validated), {} when params.yaml has none."""
        return dict((self.model_extra or {}).get(method) or {})


class FinetuneCfg(Strict):
    epochs: int = Field(6, ge=1)  # plus the sparsification epochs a one-shot method did not use
    lr: float = Field(1e-3, gt=0)
    distill: Literal["none", "logit"] = "none"  # logit: also match the dense model's outputs
    distill_weight: float = Field(1.0, ge=0)
    distill_temperature: float = Field(1.0, gt=0)


class SweepCfg(Strict):
    """Lists that dvc.yaml's `matrix` expands into prune and finetune stages."""

    methods: list[str] = Field(default_factory=lambda: ["hqs_l0"], min_length=1)  # names in pipeline.pruning.registry
    macs_reductions: list[float] = Field(default_factory=lambda: [0.5], min_length=1)

    @field_validator("methods")
    @classmethod
    def _registered(cls, methods: list[str]) -> list[str]:
        for name in methods:
            try:
                registry.check_method(name)
            except PipelineError as err:  # pydantic reports ValueErrors with the key's path
                raise ValueError(str(err)) from None
        return methods

    @model_validator(mode="after")
    def _reductions_in_range(self) -> SweepCfg:
        bad = [r for r in self.macs_reductions if not 0 < r < 1]
        if bad:
            raise ValueError(f"macs_reductions must lie in (0, 1), got {bad}")
        return self


class ExportCfg(Strict):
    """How the deliverable (the model the pick stage chose) is exported."""

    model: str = "hqs_l0-0.5"  # no longer read: the pick stage chooses (pipeline.pick); setting it is refused
    opset: int = Field(17, ge=13)
    max_abs_diff: float = Field(1e-3, gt=0)  # ONNX Runtime vs PyTorch logits on test images
    check_images: int = Field(4, ge=1)


class ReportCfg(Strict):
    """The latency protocol: batch 1 at the evaluation size, interleaved rounds."""

    threads: int = Field(2, ge=1)
    warmup: int = Field(3, ge=0)
    rounds: int = Field(20, ge=3)
    panel_images: int = Field(3, ge=1)  # test images in the prediction panel


class PredictCfg(Strict):
    """Inference of `python -m pipeline.predict` (photos and GeoTIFF scenes); its CLI flags override these."""

    max_whole: int = Field(2048, ge=32)  # photos with a longer side (px) run in the windows below, not whole
    tile: int = Field(512, ge=32)  # window side in px, a multiple of 32
    overlap: int = Field(128, ge=0)  # px shared by neighbouring windows, a multiple of 32, < tile
    batch: int = Field(4, ge=1)  # windows per forward pass
    blend: bool = True  # false: overlaps averaged with flat weights (shows the seams; for tests)
    bands: list[int] | None = None  # 1-based, 3 (as R, G, B) or 1 (grey); null: 1,2,3 (1 for 1-2 band scenes)
    scaling: Literal["auto", "percentile", "fixed"] = "auto"  # auto: uint8 as is, other dtypes percentile
    percentiles: tuple[float, float] = (2.0, 98.0)  # per band, over valid pixels -> 0..255
    value_range: tuple[float, float] | None = None  # fixed: this range -> 0..255, e.g. [0, 10000]
    simplify: float = Field(1.0, ge=0)  # --vector: Douglas-Peucker tolerance in px
    min_length: float = Field(10.0, ge=0)  # --vector: shorter polylines (px) are dropped

    @model_validator(mode="after")
    def _consistent(self) -> PredictCfg:
        for key in ("tile", "overlap"):
            if getattr(self, key) % PAD_MULTIPLE:
                raise ValueError(f"{key} {getattr(self, key)} must be a multiple of {PAD_MULTIPLE}")
        if self.overlap >= self.tile:
            raise ValueError(f"overlap {self.overlap} must be < tile {self.tile}")
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ValueError(f"bands {self.bands}: give 3 (R, G, B) or 1 band number, counting from 1")
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"percentiles {list(self.percentiles)} must satisfy 0 <= low < high <= 100")
        if self.scaling == "fixed" and (self.value_range is None or self.value_range[0] >= self.value_range[1]):
            raise ValueError("scaling fixed needs value_range [low, high] with low < high")
        return self
