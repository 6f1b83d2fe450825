"""Stage `augment`: compare albumentations policies (data in params) on the chosen model."""

from __future__ import annotations

from pipeline.config import AugmentCfg, TrainCfg
from pipeline.stages._training import study_main

DEFAULTS = {"data": "data/prepared", "model": "checkpoints/baseline", "out": "checkpoints/augment",
            "report": "reports/augment.json", "plot": "reports/augment.png", "logs": "logs/augment"}


def train_for(train: TrainCfg, cfg: AugmentCfg, name: str) -> TrainCfg:
    """The training config of policy `name`: the study's epochs, the policy's transforms."""
    return TrainCfg.model_validate({**train.model_dump(), **cfg.train_overrides(), "augment": cfg.policies[name]})


def main(argv: list[str] | None = None) -> None:
    """Train the baseline model further under each policy in `augment.compare`; keep the best."""
    study_main(__doc__, "augment", train_for, DEFAULTS, argv)


if __name__ == "__main__":
    main()
