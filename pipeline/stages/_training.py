"""What the training stages' main() share: the resume store, and main() of the study stages
(augment, loss). Apart from pipeline/stages/_cli.py so that `prepare` does not load (nor
depend on, in dvc.yaml) the training code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.stages._cli import add_resume, parser, run, wall_seconds

__all__ = ["resume_store", "study_main"]

if TYPE_CHECKING:
    from pydantic import BaseModel

    from pipeline.resume import ResumeStore


def resume_store(folder: Path | None, stage: str, *sections: BaseModel) -> ResumeStore:
    """The stage's ResumeStore: keyed by its name and the params sections it read."""
    from pipeline.resume import ResumeStore

    return ResumeStore(folder, stage, {type(s).__name__: s.model_dump() for s in sections})


def study_main(doc: str, stage: str, train_for: Callable, defaults: dict[str, str],
               argv: list[str] | None = None) -> None:
    """main() of a study stage (augment, loss): train the input model further with each
    option of `params[stage]`, keep the best; `train_for(train, cfg, name)` makes an
    option's TrainCfg."""
    from pipeline.artifact import write_json
    from pipeline.params import load_sections
    from pipeline.plots import study_bars
    from pipeline.study import continue_study

    p = parser(doc)
    for name in ("data", "model", "out", "report", "plot", "logs"):
        p.add_argument(f"--{name}", type=Path, default=Path(defaults[name]))
    add_resume(p)
    args = p.parse_args(argv)

    def body() -> None:
        sections = load_sections(args.params, "base", "train", "trainer", stage)
        base, train, trainer, cfg = sections
        resume = resume_store(args.resume_dir, stage, *sections)
        options = {name: train_for(train, cfg, name) for name in cfg.compare}
        record = continue_study(args.model, options, trainer, args.data, args.logs, base.seed,
                                cfg.iou_tolerance, args.out, resume)
        if record is None:  # a DDP rank other than 0: rank 0 writes the outputs
            return
        record["epochs"] = cfg.epochs
        record["wall_seconds"] = wall_seconds()
        write_json(record, args.report)
        study_bars(record["candidates"], record["winner"], args.plot, f"{stage} study")
        resume.clear()
        print(f"chosen: {record['winner']}")

    run(body)
