"""The command-line error runner every command shares: a user's mistake (PipelineError) or
running out of memory becomes one line on stderr and exit status 1, never a traceback; a
mistyped argument (OneLineParser) one line and exit status 2, argparse's usage error status."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from pipeline.errors import PipelineError, one_line

OOM_ADVICE = ("lower train.batch_size / train.eval_batch_size or train.crop_size (or trainer.precision: "
              "16-mixed on a GPU)")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2, without
    the usage block (several lines for a command with many options; --help shows it)."""

    def error(self, message: str) -> NoReturn:
        """Print `error: <message> (see --help)` and exit with status 2."""
        self.exit(2, f"error: {message} (see --help)\n")


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
