"""Stage `loss`: compare losses for the thin, rare line class; the winner is the dense model
that `prune` starts from (checkpoints/dense)."""

from __future__ import annotations

from pipeline.config import LossCfg, TrainCfg
from pipeline.stages._training import study_main

DEFAULTS = {"data": "data/prepared", "model": "checkpoints/augment", "out": "checkpoints/dense",
            "report": "reports/loss.json", "plot": "reports/loss.png", "logs": "logs/loss"}


def train_for(train: TrainCfg, cfg: LossCfg, name: str) -> TrainCfg:
    """The training config of option `name`: its loss (and any other train keys it sets)."""
    return TrainCfg.model_validate({**train.model_dump(), **cfg.train_overrides(), **cfg.options[name]})


def main(argv: list[str] | None = None) -> None:
    """Train the augment stage's model further with each loss in `loss.compare`; keep the best."""
    study_main(__doc__, "loss", train_for, DEFAULTS, argv)


if __name__ == "__main__":
    main()
