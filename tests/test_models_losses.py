"""Model factory, loss registry and metrics on hand-computed masks."""

import pytest
import torch

from pipeline.config import ModelCfg
from pipeline.errors import PipelineError
from pipeline.losses import LOSSES, create_loss
from pipeline.metrics import LineMetrics, line_scores
from pipeline.models import create_model


def test_factory_builds_a_model_with_one_logit_for_binary():
    model = create_model(ModelCfg(decoder={"Unet": {"decoder_channels": [16, 16, 8, 8, 8]}}))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_decoder_options_follow_the_arch():
    cfg = ModelCfg(arch="FPN", decoder={"unet": {"decoder_channels": [8, 8, 8, 8, 8]}, "FPN": {"decoder_dropout": 0.0}})
    assert cfg.decoder_options() == {"decoder_dropout": 0.0}
    assert ModelCfg(arch="Unet", decoder={"FPN": {"decoder_dropout": 0.0}}).decoder_options() == {}


def test_factory_with_towers_has_one_logit_per_class():
    model = create_model(ModelCfg(arch="FPN", encoder="resnet18"), num_classes=3)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize(("field", "value", "listed"), [("arch", "Unte", "Unet"), ("encoder", "resnet19", "resnet18")])
def test_factory_bad_names_list_the_valid_ones(field, value, listed):
    with pytest.raises(PipelineError, match=f"{value}.*valid:.*{listed}"):
        create_model(ModelCfg(**{field: value}))


def test_encoder_weights_load_from_a_local_file_only(tmp_path):
    source = create_model(ModelCfg())
    path = tmp_path / "encoder.pt"
    torch.save(source.encoder.state_dict(), path)
    model = create_model(ModelCfg(encoder_weights=str(path)))
    key = "conv1.weight"
    assert torch.equal(model.encoder.state_dict()[key], source.encoder.state_dict()[key])
    with pytest.raises(PipelineError, match="missing.pt"):
        create_model(ModelCfg(encoder_weights=str(tmp_path / "missing.pt")))


@pytest.mark.parametrize("name", [*LOSSES, "dice+bce", "dice+focal"])
def test_each_loss_is_finite_skips_ignore_and_prefers_the_truth(name):
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 32, 32) < 0.05).float()
    target[:, :, :4] = 255  # ignored rows: a loss that reads them would change below
    loss = create_loss(name)
    good = torch.where(target == 1, 6.0, -6.0)
    bad = -good
    assert torch.isfinite(loss(good, target))
    assert loss(good, target) < loss(bad, target)
    flipped = good.clone()
    flipped[:, :, :4] *= -1  # change the logits only where the target is ignored
    assert torch.allclose(loss(flipped, target), loss(good, target), atol=1e-5)


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(PipelineError, match="valid: bce, dice"):
        create_loss("dice+iou")


def test_weighted_sum_uses_the_weights():
    target = (torch.rand(1, 1, 16, 16) < 0.1).float()
    logits = torch.randn(1, 1, 16, 16)
    dice, bce = create_loss("dice")(logits, target), create_loss("bce")(logits, target)
    combined = create_loss("dice+bce", {"weights": {"dice": 2.0, "bce": 0.5}})(logits, target)
    assert torch.isclose(combined, 2 * dice + 0.5 * bce)


def test_metrics_on_hand_computed_masks_with_ignore_and_padding():
    # image 1: TP at (0,0), FP at (0,1), FN at (1,0), TN at (1,1); ignore pixel predicted line
    # image 2 (padding column): TP at (0,0), the padded column is predicted line but ignored
    prob = torch.tensor([[[0.9, 0.8, 0.9], [0.2, 0.1, 0.9]],
                         [[0.7, 0.1, 0.9], [0.3, 0.2, 0.9]]])
    target = torch.tensor([[[1, 0, 255], [1, 0, 255]],
                           [[1, 0, 255], [0, 0, 255]]])
    metric = LineMetrics()
    metric.update(prob[:1], target[:1])
    metric.update(prob[1:], target[1:])  # summed over the split, not averaged per image
    counts = metric.compute()
    out = {k: float(v) for k, v in line_scores(counts, 0.5).items()}
    tp, fp, fn, tn = 2, 1, 1, 4
    assert out["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert out["miou"] == pytest.approx((tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2)
    assert out["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert out["precision"] == pytest.approx(tp / (tp + fp))
    assert out["recall"] == pytest.approx(tp / (tp + fn))
    # at 0.15 the missed line pixel (0.2) is found, and background 0.3 and 0.2 become FP
    low = line_scores(counts, 0.15)
    assert float(low["recall"]) == pytest.approx(1.0)
    assert float(low["precision"]) == pytest.approx(3 / 6)
