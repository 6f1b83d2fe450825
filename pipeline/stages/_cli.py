"""What every stage's main() shares: argument parsing basics and one-line user errors."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError, one_line

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


def add_resume(p: argparse.ArgumentParser) -> None:
    """The --resume-dir option of the training stages."""
    p.add_argument("--resume-dir", type=Path, default=None,
                   help="keep each epoch's training state here, outside the stage's outputs, so a killed run "
                        "resumes where it stopped (dvc.yaml passes .resume; default: no resuming)")


def resume_store(folder: Path | None, stage: str, *sections: BaseModel) -> ResumeStore:
    """The stage's ResumeStore: keyed by its name and the params sections it read."""
    from pipeline.resume import ResumeStore

    return ResumeStore(folder, stage, {type(s).__name__: s.model_dump() for s in sections})


OOM_ADVICE = ("lower train.batch_size / train.eval_batch_size or train.crop_size (or trainer.precision: "
              "16-mixed on a GPU)")


def is_out_of_memory(err: BaseException) -> bool:
    """True for PyTorch's CPU and CUDA allocator failures (torch.OutOfMemoryError is a
    RuntimeError saying "out of memory") and Python's MemoryError."""
    text = str(err)
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def run(body: Callable[[], object]) -> None:
    """Run a stage body; a PipelineError becomes one line on stderr and exit status 1, and
    so does running out of memory, with advice instead of the allocator's message."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        body()
    except SystemExit as err:
        # Lightning turns SIGTERM into its SIGTERMException at the next batch: a SystemExit
        # with status 0, which DVC would take for success. (Named, not imported: importing
        # Lightning costs 3 s, too much for every stage's --help.)
        if type(err).__name__ != "SIGTERMException":
            raise
        print("error: stopped by SIGTERM; finished epochs are kept: run the stage (dvc repro) again to resume",
              file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        print(f"error: out of memory ({one_line(err, 120)}); {OOM_ADVICE}", file=sys.stderr)
        sys.exit(1)


def study_main(doc: str, stage: str, train_for: Callable, defaults: dict[str, str],
               argv: list[str] | None = None) -> None:
    """main() of a study stage (augment, loss): train the input model further with each
    option of `params[stage]`, keep the best; `train_for(train, cfg, name)` makes an
    option's TrainCfg."""
    from pipeline.params import load_sections
    from pipeline.plots import study_bars
    from pipeline.study import continue_study, write_json

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
