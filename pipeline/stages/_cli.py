"""What every stage's main() shares: argument parsing basics (the error runner: pipeline.cli)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli import run

__all__ = ["add_output", "add_paths", "add_resume", "output_paths", "parser", "resume_store", "run", "study_main"]

if TYPE_CHECKING:
    from pydantic import BaseModel

    from pipeline.resume import ResumeStore


def parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the --params option every stage takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return p


def add_paths(p: argparse.ArgumentParser, **paths: tuple[str, str]) -> None:
    """One --name option per path: name=(default, help). dvc.yaml passes them all."""
    for name, (default, text) in paths.items():
        p.add_argument(f"--{name}", type=Path, default=Path(default), help=f"{text} (default: {default})")


def add_output(p: argparse.ArgumentParser, record: str, what: str) -> None:
    """--out (required: the one output folder) and --report / --logs, which default to
    `<out>/<record>` and `<out>/logs`, so a run by hand writes nothing outside --out (a fixed
    default path would overwrite the pipeline's own run of that name). dvc.yaml passes all three."""
    p.add_argument("--out", type=Path, required=True, help=f"{what} folder; every output goes in it unless "
                                                              "--report / --logs put it elsewhere")
    p.add_argument("--report", type=Path, default=None, help=f"record (JSON) (default: <out>/{record})")
    p.add_argument("--logs", type=Path, default=None, help="training curves, DVCLive (default: <out>/logs)")


def output_paths(args: argparse.Namespace, record: str) -> None:
    """Fill in the --report and --logs that add_output left to default to --out."""
    args.report = args.report or args.out / record
    args.logs = args.logs or args.out / "logs"


def add_resume(p: argparse.ArgumentParser) -> None:
    """The --resume-dir option of the training stages."""
    p.add_argument("--resume-dir", type=Path, default=None,
                   help="keep each epoch's training state here, outside the stage's outputs, so a killed run "
                        "resumes where it stopped (dvc.yaml passes .resume; default: no resuming)")


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
        write_json(record, args.report)
        study_bars(record["candidates"], record["winner"], args.plot, f"{stage} study")
        resume.clear()
        print(f"chosen: {record['winner']}")

    run(body)
