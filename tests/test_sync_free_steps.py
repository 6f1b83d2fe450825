"""Training steps never wait for the device: no host-device sync outside the decision points.

On a GPU, reading a value back (`.item()`, `.cpu()`, `bool(t)`, ...) waits for every queued
kernel, so a per-step read serialises host and device. Counted here on the CPU, where the
same calls are made: 20 training steps of a tiny Unet with the HQS sparsifier, every call
that would sync is recorded unless it happens in a z-step or at an epoch's end."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import Strategy
from torch.overrides import TorchFunctionMode

import pipeline
from pipeline.config import ModelCfg, TrainCfg, TrainerCfg
from pipeline.losses import Distiller
from pipeline.models import create_model
from pipeline.module import SegmentationModule
from pipeline.pruning import sparsifiers
from pipeline.pruning.hqs_l0 import HqsL0
from pipeline.pruning.sparsifiers import HqsSparsifier
from pipeline.pruning.templates import attach_templates
from pipeline.train import StopOnNonFinite, fit
from tests.test_pruning import TinyNet

PACKAGE = Path(pipeline.__file__).parent
# read-backs, and copies between host and device (on the CPU every `.to` is a no-op, so any
# `.to` in a step is counted: on a GPU the step would copy, and a copy to the host waits)
SYNCS = {"item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "to"}


class SyncCounter(TorchFunctionMode):
    """Records the project's own read-backs and copies while `counting` and not `paused`.

    Only calls made by the project's code count: on the CPU every tensor is a host tensor,
    so a library's read of a tensor it keeps on the host (Adam's step count) looks the same
    as a read of a device tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.counting, self.paused, self.calls = False, 0, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.counting and not self.paused and name in SYNCS and self._from_project():
            self.calls.append(f"{name} at\n{''.join(traceback.format_stack(limit=6)[:-1])}")
        return func(*args, **kwargs)

    @staticmethod
    def _from_project() -> bool:
        return Path(sys._getframe(2).f_code.co_filename).is_relative_to(PACKAGE)


class Window(L.Callback):
    """Counting on from a training step's start; off for validation and the epoch's end."""

    def __init__(self, counter: SyncCounter) -> None:
        self.counter, self.steps = counter, 0

    def on_train_batch_start(self, *_args) -> None:
        self.counter.counting = True
        self.steps += 1

    def on_validation_start(self, *_args) -> None:
        self.counter.counting = False

    def on_train_epoch_end(self, *_args) -> None:
        self.counter.counting = False


def _paused(counter: SyncCounter, method):
    def wrapper(*args, **kwargs):
        counter.paused += 1
        try:
            return method(*args, **kwargs)
        finally:
            counter.paused -= 1

    return wrapper


pytestmark = pytest.mark.usefixtures("one_thread")


def test_twenty_hqs_training_steps_read_nothing_back_outside_z_steps_and_epoch_ends(
        tiny_data, params, tmp_path, monkeypatch):
    model_cfg = ModelCfg.model_validate(params["model"])
    # 4 steps per epoch, 5 epochs: 20 steps; a z-step every 5 steps (Z_STEPS=4), so most steps have none
    train = TrainCfg.model_validate({**params["train"], "epochs": 5, "batch_size": 2, "scheduler": "none"})
    # Lightning itself reads the logged values every log_every_n_steps (a setting): beyond this run
    trainer = TrainerCfg.model_validate({**params["trainer"], "log_every_n_steps": 100})
    monkeypatch.setattr(sparsifiers, "Z_STEPS", 4)
    counter = SyncCounter()
    z_steps = []
    monkeypatch.setattr(HqsL0, "z_step", _paused(counter, HqsL0.z_step))
    monkeypatch.setattr(StopOnNonFinite, "check", _paused(counter, StopOnNonFinite.check))
    # the batch's copy to the device (host to device: no read-back; on the CPU a .to("cpu"))
    monkeypatch.setattr(Strategy, "batch_to_device", _paused(counter, Strategy.batch_to_device))
    original_z_step = HqsL0.z_step
    monkeypatch.setattr(HqsL0, "z_step", lambda self: z_steps.append(self.step) or original_z_step(self))

    torch.manual_seed(0)
    model = create_model(model_cfg)
    templates = attach_templates(model, torch.zeros(1, 3, 64, 64))
    window = Window(counter)
    sparsifier = HqsSparsifier(templates, reduction=0.5, lr=1e-3, final_stiffness=10.0)
    with counter:
        result = fit(model_cfg, train, trainer, tiny_data, tmp_path / "logs", 0, model=model,
                     callbacks=[window, sparsifier], keep_last=True, templates=templates)
    assert result is not None and window.steps == 20
    assert z_steps == [0, 5, 10, 15]  # at the start, then every 5 steps until 80 % of the run
    assert not counter.calls, f"{len(counter.calls)} read-backs in training steps, the first:\n{counter.calls[0]}"


class _Calls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def test_template_hooks_index_on_the_templates_device_and_concatenate_once_per_forward():
    torch.manual_seed(0)
    model = TinyNet()
    templates = attach_templates(model, torch.randn(1, 3, 16, 16))
    calls = _Calls()
    with calls:
        model(torch.randn(1, 3, 16, 16))
    assert calls.names.count("cat") == 2  # the templates' flat vector once, and the net's own concatenation
    assert len(list(templates.buffers())) == len(templates.sites)  # each site's entries, moved with the templates
    templates.to("meta")
    assert all(b.device.type == "meta" for b in templates.buffers())


def test_the_training_loss_is_all_reduced_at_the_epochs_end_not_every_step(params, monkeypatch):
    model_cfg = ModelCfg.model_validate(params["model"])
    module = SegmentationModule(model_cfg.model_dump(), TrainCfg.model_validate(params["train"]).model_dump(),
                                teacher=Distiller(create_model(model_cfg)))
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **options: logged.update({name: options}))
    module.training_step({"image": torch.randn(2, 3, 64, 64), "mask": torch.zeros(2, 64, 64, dtype=torch.long)}, 0)
    # the names one on_step + on_epoch log would give (the report reads train/loss_epoch)
    assert set(logged) == {"train/loss_step", "train/loss_epoch", "train/distill_step", "train/distill_epoch"}
    for name, options in logged.items():
        assert options["on_step"] != options["on_epoch"]
        assert options.get("sync_dist", False) == options["on_epoch"], name  # all-reduce: epoch values only


def watched_run(params: dict, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """(model cfg, train, trainer, counter, model, templates) of a 2-epoch run (batch 2, no
    scheduler, Lightning's own log read-backs beyond it) whose training steps `counter`
    watches, with the seeded model and its templates."""
    model_cfg = ModelCfg.model_validate(params["model"])
    train = TrainCfg.model_validate({**params["train"], "epochs": 2, "batch_size": 2, "scheduler": "none"})
    trainer = TrainerCfg.model_validate({**params["trainer"], "log_every_n_steps": 100})
    counter = SyncCounter()
    monkeypatch.setattr(StopOnNonFinite, "check", _paused(counter, StopOnNonFinite.check))
    monkeypatch.setattr(Strategy, "batch_to_device", _paused(counter, Strategy.batch_to_device))
    torch.manual_seed(0)
    model = create_model(model_cfg)
    return model_cfg, train, trainer, counter, model, attach_templates(model, torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("kind", ["bn_l1", "group_l2"])
def test_the_sparse_training_regularisers_read_nothing_back_in_training_steps(kind, tiny_data, params, tmp_path,
                                                                              monkeypatch):
    from pipeline.pruning.regularizers import Regularizer, build_pruner

    model_cfg, train, trainer, counter, model, templates = watched_run(params, monkeypatch)
    templates.requires_grad_(False)
    regularizer = Regularizer(build_pruner(kind, model, templates, 1e-4), model)
    window = Window(counter)
    with counter:
        result = fit(model_cfg, train, trainer, tiny_data, tmp_path / "logs", 0, model=model,
                     callbacks=[window, regularizer], keep_last=True, templates=templates)
    assert result is not None and window.steps == 8
    assert not counter.calls, f"{len(counter.calls)} read-backs in training steps, the first:\n{counter.calls[0]}"


def test_tcfp_training_steps_read_nothing_back_and_leave_the_templates_where_they_are(tiny_data, params, tmp_path,
                                                                                       monkeypatch):
    from pipeline.config import PruneCfg
    from pipeline.pruning.method import PruneContext, calibration_loader
    from pipeline.pruning.registry import create_method
    from pipeline.pruning.tcfp import TcfpPruner

    model_cfg, train, trainer, counter, model, templates = watched_run(params, monkeypatch)
    folds, fold = [], TcfpPruner.fold
    monkeypatch.setattr(TcfpPruner, "fold", lambda self, grads: folds.append(len(grads)) or fold(self, grads))
    templates.max_removed = 0.75
    method = create_method("tcfp")
    ctx = PruneContext(model, templates, PruneCfg(), method.options, 0.5,
                       make_loader=lambda: calibration_loader(tiny_data, train, 0))
    pruner = method.sparsifier(ctx)
    first = templates.flat().detach().clone()
    window = Window(counter)
    with counter:
        result = fit(model_cfg, train, trainer, tiny_data, tmp_path / "logs", 0, model=model,
                     callbacks=[window, pruner], keep_last=True, templates=templates)
    assert result is not None and window.steps == 8
    assert len(folds) == 8 + len(ctx.calibration)  # every step's gradient, after the crops' at the start
    assert torch.equal(templates.flat().detach(), first)  # zeros stay zeros, the rest at 1: never stepped
    assert not counter.calls, f"{len(counter.calls)} read-backs in training steps, the first:\n{counter.calls[0]}"
