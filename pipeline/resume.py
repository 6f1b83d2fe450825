"""Resume state of training runs, kept where DVC cannot delete it.

DVC deletes a stage's outputs before it runs the stage again, so a training stage that was
killed would start from scratch. fit() instead keeps Lightning's last full checkpoint
(weights, optimiser, scheduler, loop and callback state) and the best weights so far in
`<root>/<key>/`, where the key hashes everything that decides the run: the stage's params,
the configs and seed fit() gets, its starting weights, the data files and the code. A
rerun with the same key continues after the last finished epoch; any change starts afresh.
Each epoch draws its shuffling, crops and augmentations from (seed, epoch) alone (see
pipeline.data.datamodule.EpochSampler), so the resumed run repeats the killed epoch exactly
and ends with the same weights as a run never killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

import pipeline

LAST, BEST, FINISHED = "last.ckpt", "best.ckpt", "finished.json"


class ResumeStore:
    """Resume folders of one stage run under `root` (None: no resuming, fit() uses a
    temporary folder). `clear()` once the stage has written its outputs."""

    def __init__(self, root: Path | None, stage: str, params: dict[str, Any]) -> None:
        self.root, self.stage, self.params = (Path(root) if root else None), stage, params
        self.used: list[Path] = []

    def folder(self, module: nn.Module, data: Path, **config: Any) -> Path | None:
        """The folder of the run that starts from `module`'s weights on `data` with `config`."""
        if self.root is None:
            return None
        digest = hashlib.sha256(json.dumps({"stage": self.stage, "params": self.params, "config": config},
                                           sort_keys=True, default=str).encode())
        _hash_weights(digest, module)
        _hash_files(digest, Path(data), with_content=False)
        _hash_files(digest, Path(pipeline.__file__).parent, with_content=True)
        folder = self.root / f"{self.stage}-{digest.hexdigest()[:16]}"
        folder.mkdir(parents=True, exist_ok=True)
        self.used.append(folder)
        return folder

    def clear(self) -> None:
        """Delete this stage run's folders: its outputs are written, nothing is left to resume."""
        for folder in self.used:
            shutil.rmtree(folder, ignore_errors=True)
        self.used = []


def _hash_weights(digest: Any, module: nn.Module) -> None:
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def _hash_files(digest: Any, root: Path, with_content: bool) -> None:
    """Names and sizes of the files under `root` (the data: cheap on big sets), or their
    contents (the code); a data file rewritten at the same size is caught by its mtime."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}".encode())
        digest.update(path.read_bytes() if with_content and path.suffix == ".py" else str(stat.st_mtime_ns).encode())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, via a temporary file and a rename: a run killed while
    saving leaves the previous checkpoint whole, never half of a new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class EpochSeed(L.Callback):
    """Reseed the global RNGs (dropout, drop-path) from (seed, epoch) at each epoch's first
    batch, so a resumed epoch draws what the killed one drew."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == 0:
            L.seed_everything(epoch_seed(self.seed, trainer.current_epoch), verbose=False)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for epoch `epoch` of a run seeded `seed` (distinct for every pair)."""
    return (seed * 1_000_003 + epoch) % (2**32)


def finished_epochs(folder: Path | None) -> int | None:
    """Epochs a finished run in `folder` trained (it may have stopped early), else None."""
    if folder is None or not (folder / FINISHED).exists():
        return None
    return int(json.loads((folder / FINISHED).read_text())["epochs"])


def mark_finished(folder: Path, epochs: int) -> None:
    """Record that the run in `folder` ended after `epochs` epochs (a rerun must not train on)."""
    tmp = folder / f".{FINISHED}.tmp"
    tmp.write_text(json.dumps({"epochs": epochs}))
    os.replace(tmp, folder / FINISHED)
