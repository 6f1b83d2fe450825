"""What every stage's main() shares: argument parsing basics (the error runner: pipeline.cli).

Kept light (argparse and pipeline.cli only): `prepare` imports it, and pipeline/deps.py counts
every import in this file, lazy ones too, as code of every stage. What only the training
stages share (the resume store, the study stages' main) is in pipeline/stages/_training.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import cli
from pipeline.console import quiet_lightning
from pipeline.stages import STARTED

__all__ = ["add_output", "add_paths", "add_resume", "output_paths", "parser", "run", "wall_seconds"]


def run(body: Callable[[], object]) -> None:
    """Run a stage body with Lightning quietened (pipeline.console); errors become one line
    (pipeline.cli.run)."""
    quiet_lightning()
    cli.run(body)


def wall_seconds() -> float:
    """Seconds since the stage's command started, imports included (pipeline.stages.STARTED):
    its record's `wall_seconds`, which the report shows."""
    return round(time.monotonic() - STARTED, 1)


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
