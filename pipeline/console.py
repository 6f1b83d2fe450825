"""What the commands print: Lightning kept to what matters, progress that suits where it goes.

`quiet_lightning()` runs once at every stage's entry (pipeline/stages/_cli.py `run`): no
advertisement ("Tip: ... litlogger / litmodels") and no "GPU available / TPU available"
lines (Lightning's rank-zero info messages); its other messages ("`Trainer.fit` stopped",
DDP's rank lines) and all warnings still show. pipeline/train.py keeps checkpoints apart
from the DVCLive logger's folder, so a fresh run has no "Checkpoint directory ... exists
and is not empty" warning (a resumed one does, rightly: it continues from that folder).

`progress()` is a tqdm bar on a terminal and a plain line now and then otherwise (a log file
or DVC's captured output gets no carriage returns); `pipeline.epoch_progress` does the same
for Lightning's training loop.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

# Lightning's rank_zero_info() messages log here (lightning_utilities logs under whichever
# name was set last); the ones that start with NOISE are dropped
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
NOISE = ("💡 Tip:", "Tip:", "GPU available", "TPU available", "HPU available")
# Lightning's own call of an API this torch deprecates: nothing a user can act on
PYTREE_WARNING = r".*isinstance\(treespec, LeafSpec\)` is deprecated"
PLAIN_EVERY = 30.0  # seconds between two plain progress lines (the last one is always printed)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's advertisement and device lines (see the module docstring); idempotent."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=PYTREE_WARNING)


def interactive(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: stderr, where progress goes) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             stream: TextIO | None = None, every: float = PLAIN_EVERY,
             clock=time.monotonic) -> Iterator[T]:
    """Iterate `items` showing progress on `stream` (default stderr): a tqdm bar on a terminal,
    else a plain line `desc: 3/20 rounds, 12 s` at most every `every` seconds and once at the end."""
    stream = sys.stderr if stream is None else stream
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if interactive(stream):
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit, file=stream)
        return
    started = last = clock()
    done = 0
    for item in items:
        yield item
        done += 1
        now = clock()
        if now - last >= every and (total is None or done < total):
            stream.write(f"{desc}: {done}{f'/{total}' if total else ''} {unit}, {duration(now - started)}\n")
            stream.flush()
            last = now
    stream.write(f"{desc}: {done}{f'/{total}' if total else ''} {unit} in {duration(clock() - started)}\n")
    stream.flush()
