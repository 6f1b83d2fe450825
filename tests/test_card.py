"""The model card (model.json): validated on load, minimal own-model cards load, one loader
for dense and pruned models; every schema default of params.yaml builds."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.artifact import META, load_card, load_model, save_model
from pipeline.card import ModelCard
from pipeline.config import ModelCfg, TrainCfg
from pipeline.errors import PipelineError
from pipeline.losses import create_loss
from pipeline.models import create_model
from pipeline.params import SECTIONS

TINY = {"arch": "Unet", "encoder": "resnet18", "decoder": {"Unet": {"decoder_channels": [16, 16, 8, 8, 8]}}}


def test_the_readme_own_model_card_loads_with_defaults(tmp_path):
    model = create_model(ModelCfg.model_validate(TINY))
    save_model(model, tmp_path, ModelCard.model_validate({"model": TINY, "num_classes": 2}))
    (tmp_path / META).write_text(json.dumps({"model": TINY, "num_classes": 2}))  # as a user writes it
    loaded, card = load_model(tmp_path)
    assert card.threshold == 0.5 and card.cost_size == 256 and not card.pruned_channels
    assert card.normalisation.mean == [0.485, 0.456, 0.406]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])


@pytest.mark.parametrize(("change", "named"), [
    ({"treshold": 0.4}, "treshold"),  # misspelt key: an error, not a silent default
    ({"threshold": "high"}, "threshold"),
    ({"num_classes": 5}, "num_classes"),
    ({"model": {**TINY, "arch": 3}}, "model.arch"),
])
def test_a_bad_card_is_one_line_naming_the_file_and_the_field(tmp_path, change, named):
    (tmp_path / META).write_text(json.dumps({"model": TINY, "num_classes": 2, **change}))
    with pytest.raises(PipelineError) as err:
        load_card(tmp_path)
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / META) in text and named in text


def test_a_card_without_a_model_is_refused(tmp_path):
    (tmp_path / META).write_text(json.dumps({"num_classes": 2}))
    with pytest.raises(PipelineError, match="model: Field required"):
        load_card(tmp_path)


def test_one_loader_rebuilds_a_pruned_model_from_its_removed_channels(tmp_path):
    from pipeline.artifact import remove_channels

    dense = create_model(ModelCfg.model_validate(TINY))
    removed = {"encoder.layer1.0.conv1": [0, 3, 5]}
    pruned = remove_channels(dense, removed)
    save_model(pruned, tmp_path, ModelCard(model=ModelCfg.model_validate(TINY), pruned_channels=removed))
    loaded, card = load_model(tmp_path)
    assert loaded.encoder.layer1[0].conv1.out_channels == 64 - 3
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(pruned.eval()(x), loaded.eval()(x))
    (tmp_path / META).write_text(json.dumps({**card.to_json(), "pruned_channels": {"encoder.nope": [1]}}))
    with pytest.raises(PipelineError, match="pruned_channels do not fit"):
        load_model(tmp_path)


def test_every_schema_default_builds():
    """A params file that leaves a section or key out gets these defaults: each must work."""
    sections = {name: schema() for name, schema in SECTIONS.items()}  # a section left out validates
    train = TrainCfg()
    for option in sections["loss"].options.values():
        cfg = TrainCfg.model_validate({**train.model_dump(), **option})
        create_loss(cfg.loss, cfg.loss_options, num_classes=2)
    model = create_model(ModelCfg())
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_a_trained_model_s_card_names_its_training_data(tiny_data):
    from pipeline.train import FitResult, describe

    card = describe(ModelCfg(), 2, FitResult(module=None, threshold=0.4, metrics={}, data=tiny_data))
    data = card.training_data
    assert data.source == "synthetic" and data.synthetic and data.split_file is None
    assert set(data.images) == {"train", "val", "test"} and sum(data.images.values()) == 16
    assert ModelCard.model_validate(card.to_json()).training_data == data  # it survives model.json


def test_the_onnx_file_carries_the_card_and_predict_warns_once_for_synthetic_only(tiny_data, tmp_path, capsys):
    import onnx
    from PIL import Image

    from pipeline.card import TrainingData
    from pipeline.export import export_onnx
    from pipeline.predict import main as predict_main

    cfg = ModelCfg(encoder="resnet18", decoder={"Unet": {"decoder_channels": [8, 8, 8, 8, 8]}})
    card = ModelCard(model=cfg, training_data=TrainingData.read(tiny_data), limits=["a limit"])
    export_onnx(create_model(cfg).eval(), card, tmp_path / "model.onnx", 64, 64)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):  # two photos, one warning
        Image.new("RGB", (64, 64), (120, 140, 160)).save(tmp_path / "in" / name)
    predict_main(["--model", str(tmp_path / "model.onnx"), "--input", str(tmp_path / "in"), "--out",
                  str(tmp_path / "out")])
    warned = [line for line in capsys.readouterr().err.splitlines() if "synthetic wires only" in line]
    assert len(warned) == 1, warned
    real = card.updated(training_data=card.training_data.model_copy(update={"source": "pld-uav"}))
    export_onnx(create_model(cfg).eval(), real, tmp_path / "real.onnx", 64, 64)
    predict_main(["--model", str(tmp_path / "real.onnx"), "--input", str(tmp_path / "in"), "--out",
                  str(tmp_path / "out2")])
    assert "synthetic" not in capsys.readouterr().err
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "real.onnx")).metadata_props}
    assert json.loads(meta["model_card"])["limits"] == ["a limit"]
    assert "pruned_channels" not in json.loads(meta["model_card"])


def test_the_commit_is_dirty_only_when_code_or_params_changed(tmp_path):
    import subprocess

    from pipeline.model_card import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_commit(tmp_path) is None  # not a repository
    git("init", "-q")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.json").write_text("{}")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "reports" / "r.json").write_text('{"b": 2}')  # a stage record, rewritten by dvc repro
    assert git_commit(tmp_path) == clean
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert git_commit(tmp_path) == clean + "-dirty"
