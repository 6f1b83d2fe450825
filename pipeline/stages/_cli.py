"""What every stage's main() shares: argument parsing basics and one-line user errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from pipeline.errors import PipelineError


def parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the --params option every stage takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return p


def run(body: Callable[[], object]) -> None:
    """Run a stage body; a PipelineError becomes one line on stderr and exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        body()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def passthrough_main(doc: str, stage: str, argv: list[str] | None = None) -> None:
    """main() of a stage not built yet: copy the input model, report that it is a pass-through."""
    from pathlib import Path

    from pipeline.artifact import copy_model
    from pipeline.study import write_json

    p = parser(doc)
    p.add_argument("--model", type=Path, required=True, help="input model folder")
    p.add_argument("--out", type=Path, required=True, help="output model folder")
    p.add_argument("--report", type=Path, default=Path(f"reports/{stage}.json"))
    args = p.parse_args(argv)

    def body() -> None:
        meta = copy_model(args.model, args.out, stage=stage)
        write_json({"status": "pass-through (stage not built yet)", "metrics": meta["metrics"]}, args.report)

    run(body)
