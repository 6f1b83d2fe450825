"""Train the tiny config with DDP on 2 CPU processes; each rank records what it saw.

    python tests/ddp_fit.py OUT_DIR DATA_DIR    (with `pipeline` importable: pip install -e . or PYTHONPATH=.)

Run it as a script, never inside pytest: Lightning's ddp strategy starts rank 1 by re-running
this command line. Each rank writes OUT_DIR/rank{r}.pt (its weights when training ends) and
OUT_DIR/rank{r}.json (the training sample names it saw per epoch, its optimizer steps, and
whether `fit` returned a result); the rank that gets a result (rank 0) saves the model to OUT_DIR/model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from pipeline.artifact import save_model
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.preset import merge
from pipeline.train import describe, fit

ROOT = Path(__file__).resolve().parents[1]
TRAINER = {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "enable_progress_bar": False}


class Recorder(L.Callback):
    """Per rank: the names in every training batch, by epoch; the weights at the end of fit."""

    def __init__(self, out: Path) -> None:
        self.out, self.rank, self.steps = out, -1, 0
        self.names: dict[int, list[str]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.names.setdefault(trainer.current_epoch, []).extend(batch["name"])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rank, self.steps = trainer.global_rank, trainer.global_step
        torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
                   self.out / f"rank{self.rank}.pt")


def main(out: Path, data: Path) -> None:
    """Fit the tiny model on `data` with 2 DDP ranks; write each rank's record to `out`."""
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                   yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text()))
    model_cfg = ModelCfg.model_validate(params["model"])
    train_cfg = TrainCfg.model_validate({**params["train"], "epochs": 1})
    trainer_cfg = TrainerCfg.model_validate({**params["trainer"], **TRAINER})
    recorder = Recorder(out)
    result = fit(model_cfg, train_cfg, trainer_cfg, data, out / "logs", seed=0, callbacks=[recorder])
    if result is not None:
        save_model(result.module.model, out / "model", describe(model_cfg, 2, result))
    record = {"names": recorder.names, "steps": recorder.steps, "returned_result": result is not None}
    (out / f"rank{recorder.rank}.json").write_text(json.dumps(record, indent=1))
    # rank 1 is rank 0's child but nobody waits for it: meet here, so that when the command
    # returns, every rank has written its record
    torch.distributed.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
