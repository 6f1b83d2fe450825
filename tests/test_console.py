"""Quieter logs (issue #16 item 8): no Lightning advertisement or device lines (its other
messages kept), no checkpoint-folder warning on a fresh run, plain progress lines when the
output is not a terminal, stage wall times in the report."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest
import yaml

from pipeline.config import TrainerCfg
from pipeline.console import duration, interactive, progress
from pipeline.report.render import stage_times, time_table
from pipeline.speed import interleaved
from tests.conftest import ROOT

# A tiny Lightning fit, once as Lightning prints it and once through a stage's entry
# (pipeline/stages/_cli.py run); stderr is a pipe, not a terminal.
FIT_TWICE = """
import sys, tempfile, warnings
from pathlib import Path
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from pipeline.stages._cli import run

warnings.simplefilter("always")  # the second fit's warnings must not hide as repeats of the first's

def fit():
    folder = Path(tempfile.mkdtemp())
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder,
                        callbacks=[ModelCheckpoint(dirpath=folder)])
    trainer.fit(BoringModel())

print("=== lightning", file=sys.stderr, flush=True)
fit()
print("=== stage", file=sys.stderr, flush=True)
run(fit)
"""
NOISE = {"advertisement": "Tip:", "GPU line": "GPU available", "TPU line": "TPU available",
         "HPU line": "HPU available", "pytree warning": "isinstance(treespec, LeafSpec)"}
KEPT = "`Trainer.fit` stopped: `max_epochs=1` reached"  # what Lightning says that matters


@pytest.fixture(scope="module")
def fit_output() -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", FIT_TWICE], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=True)
    before, _, after = (done.stdout + done.stderr).partition("=== stage")
    return {"lightning": before.partition("=== lightning")[2], "stage": after}


def test_lightning_alone_prints_the_noise(fit_output):
    """The control: this Lightning still prints what the stage entry must hide."""
    shown = {name for name, text in NOISE.items() if text in fit_output["lightning"]}
    assert {"advertisement", "GPU line"} <= shown, fit_output["lightning"]


def test_stage_entry_hides_lightning_tips_and_device_lines_only(fit_output):
    shown = {name: text for name, text in NOISE.items() if text in fit_output["stage"]}
    assert not shown, f"a stage still prints {sorted(shown)}:\n{fit_output['stage']}"
    assert KEPT in fit_output["stage"], fit_output["stage"]


def test_a_fresh_fit_has_no_checkpoint_folder_warning(tiny_data, params, tmp_path):
    """pipeline.train.fit keeps its checkpoints apart from the DVCLive logger's folder."""
    import warnings

    from pipeline.config import ModelCfg, TrainCfg
    from pipeline.train import fit

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fit(ModelCfg.model_validate(params["model"]), TrainCfg.model_validate({**params["train"], "epochs": 1}),
            TrainerCfg.model_validate(params["trainer"]), tiny_data, tmp_path / "logs", 0)
    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "exists and is not empty" in m], messages
    assert (tmp_path / "logs").is_dir()  # DVCLive logged (the folder the checkpoints once shared)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_lines_when_not_a_terminal():
    out, now = io.StringIO(), iter(float(t) for t in range(0, 1000, 10))
    assert not interactive(out)
    items = list(progress(range(12), "eager latency", unit="rounds", stream=out, every=30, clock=lambda: next(now)))
    assert items == list(range(12))
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # a line every 30 s of the fake clock (10 s per round), then the last one with the total time
    assert lines[:3] == ["eager latency: 3/12 rounds, 30 s", "eager latency: 6/12 rounds, 1 min 00 s",
                         "eager latency: 9/12 rounds, 1 min 30 s"]
    assert lines[-1] == "eager latency: 12/12 rounds in 2 min 10 s" and len(lines) == 4


def test_progress_is_a_bar_on_a_terminal():
    out = Terminal()
    assert interactive(out)
    assert list(progress(range(3), "peak memory", unit="models", stream=out)) == [0, 1, 2]
    assert "\r" in out.getvalue() and "3/3" in out.getvalue()


def test_timing_rounds_show_progress(capsys):
    ticks = iter(float(t) for t in range(10_000))
    interleaved({"a": lambda: None, "b": lambda: None}, "a", rounds=4, warmup=0, clock=lambda: next(ticks),
                desc="eager latency")
    assert capsys.readouterr().err.splitlines()[-1].startswith("eager latency: 4/4 rounds in ")


def test_duration_reads_at_a_glance():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]


def test_epoch_lines_only_when_the_bar_is_on_and_output_is_not_a_terminal():
    from pipeline.epoch_progress import EpochLines, epoch_lines

    assert [type(c) for c in epoch_lines(TrainerCfg(), "x", io.StringIO())] == [EpochLines]
    assert epoch_lines(TrainerCfg(), "x", Terminal()) == []  # Lightning's own bar
    assert epoch_lines(TrainerCfg(enable_progress_bar=False), "x", io.StringIO()) == []


def test_training_progress_is_one_plain_line_per_epoch(tmp_path):
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    from pipeline.epoch_progress import EpochLines

    out = io.StringIO()
    bar = EpochLines("Unet-resnet18", out)
    trainer = L.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[bar])
    assert trainer.progress_bar_callback is bar  # it replaces Lightning's default bar
    trainer.fit(BoringModel())
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 2, text
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(rf"Unet-resnet18 epoch {epoch}/2: 3 batches in \d+ s", line), line


def test_report_shows_each_stages_wall_time(tmp_path):
    (tmp_path / "prepare.json").write_text(json.dumps({"wall_seconds": 12.0}))
    (tmp_path / "export.json").write_text(json.dumps({"wall_seconds": 3}))
    records = {"studies": {"baseline": {"wall_seconds": 300.2}, "augment": {"wall_seconds": 65}, "loss": {}},
               "prune": {"hqs_l0-0.5": {"wall_seconds": 100}}, "finetune": {"hqs_l0-0.5": {"wall_seconds": 200}}}
    times = stage_times(tmp_path, records)
    assert times == [("prepare", 12.0), ("baseline", 300.2), ("augment", 65.0), ("loss", None),
                     ("prune hqs_l0-0.5", 100.0), ("finetune hqs_l0-0.5", 200.0), ("export", 3.0)]
    table = time_table(times)
    assert "| baseline | 5 min 00 s |" in table and "| loss | not recorded |" in table
    assert table.splitlines()[-1] == "| **total** | 11 min 20 s (recorded stages only) |"


def test_a_stage_records_its_wall_time(tmp_path, params):
    from pipeline.stages.prepare import main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "prepared"),
          "--metrics", str(tmp_path / "prepare.json")])
    seconds = json.loads((tmp_path / "prepare.json").read_text())["wall_seconds"]
    assert isinstance(seconds, float) and seconds >= 0  # in-process: since pipeline.stages was imported
    assert stage_times(tmp_path, {"studies": {}, "prune": {}, "finetune": {}}) == [("prepare", seconds)]


def test_report_lists_its_prepare_record_as_a_dep():
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]["deps"]
    assert "reports/prepare.json" in deps


def test_study_training_gets_the_plain_epoch_lines(monkeypatch, tmp_path):
    """The study stages (baseline, augment, loss) pass EpochLines to fit when stderr is no terminal."""
    import pipeline.study as study
    from pipeline.config import ModelCfg, TrainCfg

    seen = {}

    def fake_fit(*args, callbacks=None, **kwargs):
        seen["callbacks"] = callbacks
        return None  # as on a DDP rank other than 0: nothing else runs

    monkeypatch.setattr(study, "fit", fake_fit)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    variant = study.Variant("Unet-resnet18", ModelCfg(), TrainCfg())
    assert study.run_variant(variant, TrainerCfg(), tmp_path, tmp_path, 0, 2, 64) is None
    assert [(type(c).__name__, c.name) for c in seen["callbacks"]] == [("EpochLines", "Unet-resnet18")]


def test_evaluation_prints_no_bar_into_a_log(tiny_data, params, capfd):
    """Val and test passes after training: no carriage-return bar when stderr is not a terminal."""
    from pipeline.config import ModelCfg, TrainCfg
    from pipeline.data.datamodule import SegmentationData
    from pipeline.module import SegmentationModule
    from pipeline.train import evaluate

    train = TrainCfg.model_validate(params["train"])
    module = SegmentationModule(ModelCfg.model_validate(params["model"]).model_dump(), train.model_dump(), 2)
    result = evaluate(module, SegmentationData(tiny_data, train), TrainerCfg(enable_progress_bar=True))
    assert "test/iou" in result.metrics
    shown = capfd.readouterr()
    text = shown.out + shown.err  # Lightning's Rich bar writes to stdout
    assert "\r" not in text and "Validation" not in text and "Testing" not in text, text[-500:]
