"""The prune and finetune stages: every method meets the MAC target on the physically pruned
model, the saliency gap on each decision's own score, distillation, equal budgets, and the stage chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline.artifact import load_model, save_model
from pipeline.config import FinetuneCfg, ModelCfg, PruneCfg, SweepCfg, TrainCfg, TrainerCfg
from pipeline.errors import PipelineError
from pipeline.losses import Distiller
from pipeline.measure import macs_and_params
from pipeline.models import create_model
from pipeline.pruning import registry
from pipeline.pruning.method import PruneContext
from pipeline.pruning.methods import (
    HqsSparsifier,
    ImportanceMethod,
    importance_scores,
    keep_by_score,
    saliency_gap,
    tied_share,
)
from pipeline.pruning.registry import check_method, create_method, method_class, method_names
from pipeline.pruning.removal import fold_and_remove
from pipeline.pruning.run import prune as run_prune
from pipeline.pruning.templates import attach_templates
from pipeline.stages import finetune, prune
from tests.test_pruning import SIZE, TinyNet, smp_model

ONE_SHOT = [name for name in method_names()
            if issubclass(method_class(name), ImportanceMethod) and not method_class(name).trains]


def importance(method: str):
    """The Torch-Pruning importance a one-shot method scores with."""
    return create_method(method).importance(None)


def test_the_method_registry_is_what_the_config_accepts():
    assert SweepCfg(methods=method_names()).methods == method_names()
    assert sorted(ONE_SHOT) == ["magnitude", "random", "slimming"]
    trained = sorted(n for n in method_names() if method_class(n).trains)
    assert trained == ["bn_l1", "cluster_ssfp", "group_l2", "hqs_l0", "hqs_l0_plain", "sfp", "ssfp", "tcfp"]
    with pytest.raises(PipelineError, match="hqs_l0.*magnitude"):
        check_method("lottery")
    with pytest.raises(ValueError, match="lottery"):
        SweepCfg(methods=["lottery"])
    with pytest.raises(ValueError, match="macs_reductions"):
        SweepCfg(macs_reductions=[0.5, 1.2])


@pytest.mark.parametrize("method", ONE_SHOT)
@pytest.mark.parametrize(("arch", "encoder"), [("Unet", "resnet18"), ("DeepLabV3Plus", "mobilenet_v2")])
def test_one_shot_methods_meet_the_mac_target_on_the_pruned_model(method, arch, encoder):
    model, x = smp_model(arch, encoder), torch.randn(1, 3, SIZE, SIZE)
    dense_macs, _ = macs_and_params(model, SIZE)
    templates = attach_templates(model, x)
    torch.manual_seed(0)
    scores = importance_scores(model, templates, importance(method))
    assert scores.shape == (templates.entries,) and scores.isfinite().all()
    keep = keep_by_score(templates, scores, 0.5)
    pruned = fold_and_remove(model, templates, templates.split(keep))
    macs, _ = macs_and_params(pruned, SIZE)
    assert abs((1 - macs / dense_macs) - 0.5) <= 0.02
    with torch.no_grad():
        assert pruned(x).shape == (1, 1, SIZE, SIZE)


def test_magnitude_drops_the_weakest_channels():
    model, x = smp_model("Unet", "resnet18"), torch.randn(1, 3, SIZE, SIZE)
    templates = attach_templates(model, x)
    scores = importance_scores(model, templates, importance("magnitude"))
    keep = keep_by_score(templates, scores, 0.3)
    forced = torch.zeros_like(keep)  # entries kept only because their group needs one
    for g in templates.groups:
        part = keep[g.offset : g.offset + g.size]
        if part.sum() == 1:
            forced[g.offset : g.offset + g.size] = part
    assert scores[keep & ~forced].min() >= scores[~keep].max()


def test_saliency_gap_is_smallest_kept_over_largest_removed():
    effective = torch.tensor([0.9, 0.001, 0.5, 0.002])
    keep = torch.tensor([True, False, True, False])
    assert saliency_gap(effective, keep) == pytest.approx(0.5 / 0.002)
    assert saliency_gap(effective, torch.ones(4, dtype=torch.bool)) == float("inf")


class _Trainer:
    estimated_stepping_batches = 40


def test_distillation_pulls_only_where_student_and_teacher_differ():
    teacher = nn.Conv2d(3, 1, 1)
    image, mask = torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    mask[:, :4] = 255  # ignored pixels do not count
    distil = Distiller(teacher)
    same = teacher(image).detach().requires_grad_(True)
    distil(image, same, mask).backward()
    assert same.grad.abs().max() < 1e-6
    other = torch.zeros_like(same, requires_grad=True)
    distil(image, other, mask).backward()
    assert other.grad[:, :, 4:].abs().max() > 0 and other.grad[:, :, :4].abs().max() == 0
    distil.train()
    assert not distil.teacher.training  # the teacher's BN statistics never move


@pytest.fixture(scope="module")
def dense(tmp_path_factory, params) -> Path:
    """An untrained tiny Unet saved as a dense model folder, as the loss stage writes one."""
    folder = tmp_path_factory.mktemp("dense")
    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    model = create_model(cfg)
    train = TrainCfg.model_validate(params["train"]).model_dump()
    save_model(model, folder, {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5, "cost_size": 64,
                               "metrics": {"val/iou": 0.0}, "train": train})
    return folder


@pytest.mark.parametrize("method", ["hqs_l0", "magnitude"])
def test_prune_then_finetune_stages(method, dense, tiny_data, params, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "pruned"
    prune.main(["--params", str(path), "--method", method, "--macs-reduction", "0.5", "--model", str(dense),
                "--data", str(tiny_data), "--out", str(out), "--report", str(tmp_path / "prune.json"),
                "--logs", str(tmp_path / "logs")])
    record = json.loads((tmp_path / "prune.json").read_text())
    assert any((tmp_path / "logs").rglob("*.tsv"))  # dvc.yaml declares the curves: one-shot methods write them too
    assert abs(record["achieved_reduction"] - 0.5) <= 0.02
    assert ("templates" in record) == (method == "hqs_l0")
    # one-shot removal recalibrates BN and keeps both figures; HQS-L0 zeroes its dropped templates instead
    assert record["recalibrated"] == (method == "magnitude") and ("masking" in record) == (method == "hqs_l0")
    raw, after = record["after_removal_raw"], record["after_removal"]
    assert raw.keys() == after.keys() and (raw["val/loss"] != after["val/loss"]) == record["recalibrated"]
    if method == "hqs_l0":
        masking = record["masking"]
        assert masking["after_zeroing"] == pytest.approx(masking["after_removal"], abs=1e-6)
    assert any(kept < n for n, kept in record["channels"].values())
    assert 0 <= record["tied_share"] <= 1 and record["decision_seconds"] >= 0
    model, meta = load_model(out)
    assert macs_and_params(model, 64)[0] / 1e9 == pytest.approx(record["pruned"]["gmacs"])

    finetune.main(["--params", str(path), "--model", str(out), "--dense", str(dense), "--data", str(tiny_data),
                   "--out", str(tmp_path / "final"), "--report", str(tmp_path / "final.json"),
                   "--logs", str(tmp_path / "logs")])
    done = json.loads((tmp_path / "final.json").read_text())
    # equal budgets: the one-shot method gets the sparsification epochs as extra fine-tuning
    assert done["epochs"] == params["finetune"]["epochs"] + (params["prune"]["epochs"] if method == "magnitude" else 0)
    final, _ = load_model(tmp_path / "final")
    assert macs_and_params(final, 64)[0] == macs_and_params(model, 64)[0]


def snapshot(folder: Path) -> dict[str, float]:
    """{file: modification time} of every file under `folder`."""
    return {str(f.relative_to(folder)): f.stat().st_mtime for f in folder.rglob("*") if f.is_file()}


def test_own_model_commands_write_only_into_their_out_folder(dense, tiny_data, params, tmp_path, monkeypatch):
    """The README's own-model commands with one --out each: the record and the curves go in
    it too, nothing lands in the working directory or beside the inputs."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # where the old fixed defaults (reports/prune/hqs_l0-0.5.json, logs/...) landed
    inputs = {folder: snapshot(folder) for folder in (dense, tiny_data)}
    prune.main(["--params", str(path), "--model", str(dense), "--data", str(tiny_data), "--method", "hqs_l0",
                "--macs-reduction", "0.5", "--out", "my_pruned"])
    finetune.main(["--params", str(path), "--model", "my_pruned", "--dense", str(dense), "--data", str(tiny_data),
                   "--out", "my_final"])
    assert sorted(p.name for p in work.iterdir()) == ["my_final", "my_pruned"]
    for out, record in (("my_pruned", "prune.json"), ("my_final", "finetune.json")):
        assert (work / out / record).is_file() and any((work / out / "logs").rglob("*.tsv"))
        load_model(work / out)
    assert {folder: snapshot(folder) for folder in inputs} == inputs
    with pytest.raises(SystemExit):  # no default --out: it would overwrite the pipeline's run
        prune.main(["--params", str(path), "--model", str(dense), "--data", str(tiny_data)])


def test_an_already_pruned_model_is_refused(dense, tiny_data, params, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    args = ["--params", str(path), "--method", "random", "--data", str(tiny_data), "--logs", str(tmp_path / "l")]
    prune.main([*args, "--model", str(dense), "--out", str(tmp_path / "once"), "--report", str(tmp_path / "1.json")])
    with pytest.raises(SystemExit):
        prune.main([*args, "--model", str(tmp_path / "once"), "--out", str(tmp_path / "twice"),
                    "--report", str(tmp_path / "2.json")])
    assert not (tmp_path / "twice").exists()



def test_saliency_gap_leaves_out_entries_only_the_rules_kept():
    scores = torch.tensor([4.0, 3.0, 0.001, 1.0, 0.5])
    keep = torch.tensor([True, True, True, False, False])  # 0.001 kept only as a layer's last channel
    by_score = torch.tensor([True, True, False, False, False])
    assert saliency_gap(scores, keep) == pytest.approx(0.001)  # counted as a decision, it hides the cut
    assert saliency_gap(scores, keep, by_score) == pytest.approx(3.0)


def test_tied_share_counts_every_entry_that_shares_its_score():
    assert tied_share(torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0, 3.0])) == pytest.approx(5 / 6)
    assert tied_share(torch.tensor([0.5, 0.25, 1.0])) == 0.0
    assert tied_share(torch.tensor([])) == 0.0


def test_saliency_gap_of_ties_at_zero_is_no_gap():
    effective = torch.tensor([0.0, 0.0, 0.5])
    assert saliency_gap(effective, torch.tensor([True, False, True])) == 1.0


def test_hqs_sparsifier_measures_the_task_gradient_before_each_step_and_pulls_after():
    torch.manual_seed(0)
    model = TinyNet()
    templates = attach_templates(model, torch.randn(1, 3, 16, 16))
    sparsifier = HqsSparsifier(templates, reduction=0.3, lr=0.01, final_stiffness=10.0)
    sparsifier.on_train_start(_Trainer())
    nn.functional.mse_loss(model(torch.randn(2, 3, 16, 16)), torch.zeros(2, 1, 16, 16)).backward()
    grad = torch.cat([p.grad for p in templates.scales])
    sparsifier.on_before_optimizer_step(_Trainer())
    assert torch.allclose(sparsifier.hqs.fisher.float(), grad.pow(2))
    dropped = ~sparsifier.keep()
    before = templates.flat().detach()[dropped]
    sparsifier.on_train_batch_end(_Trainer())
    assert sparsifier.hqs.step == 1 and (templates.flat().detach()[dropped].abs() < before.abs()).all()


@pytest.mark.parametrize("method", ["hqs_l0", "hqs_l0_plain"])
def test_hqs_l0_plain_never_uses_a_fisher_estimate_and_both_decide_on_the_last_z_step_score(method):
    torch.manual_seed(0)
    model = TinyNet()
    templates = attach_templates(model, torch.randn(1, 3, 16, 16))
    chosen = create_method(method)
    sparsifier = chosen.sparsifier(PruneContext(model, templates, PruneCfg(), chosen.options, 0.3))
    sparsifier.on_train_start(_Trainer())
    for _ in range(3):  # task gradients seen, a z-step taken on them
        nn.functional.mse_loss(model(torch.randn(2, 3, 16, 16)), torch.randn(2, 1, 16, 16)).backward()
        sparsifier.on_before_optimizer_step(_Trainer())
        sparsifier.hqs.observe(torch.cat([p.grad for p in templates.scales]))  # even called directly
        templates.zero_grad()
    sparsifier.hqs.z_step()
    plain = templates.flat().detach().abs() * templates.neighbour_scale()
    assert (sparsifier.hqs.fisher is None) == (method == "hqs_l0_plain")
    assert torch.allclose(sparsifier.hqs.score.float(), plain) == (method == "hqs_l0_plain")
    keep = chosen.keep(None)
    cost = sparsifier.hqs.templates.cost  # the z-step thresholds score²/c: score/√c is what it decided on
    assert torch.equal(chosen.decision_scores, sparsifier.hqs.score / cost.sqrt())
    assert torch.equal(keep, sparsifier.hqs.keep) and torch.equal(chosen.decided_by_score, sparsifier.hqs.by_score)


class FixedScoreMethod(ImportanceMethod):
    """Keeps by random scores but reports 4 for every kept entry and 2 for every removed one."""

    def keep(self, ctx: PruneContext) -> torch.Tensor:
        keep = keep_by_score(ctx.templates, torch.rand(ctx.templates.entries), ctx.reduction)
        self.decision_scores = torch.where(keep, 4.0, 2.0)
        return keep


def test_the_record_s_saliency_gap_is_on_the_method_s_own_decision_scores(dense, tiny_data, params, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setitem(registry.METHODS, "fixed", f"{__name__}:FixedScoreMethod")
    cfg = PruneCfg.model_validate({**params["prune"], "epochs": 1})
    _model, _card, record = run_prune(dense, tiny_data, "fixed", 0.5, cfg, TrainerCfg.model_validate(params["trainer"]),
                                      0, tmp_path / "logs")
    assert record["saliency_gap"] == 2.0


def test_sparsify_and_finetune_training_get_the_plain_epoch_lines(dense, tiny_data, params, tmp_path, monkeypatch):
    """Like the study stages, prune's sparsification and finetune print one line per epoch
    when stderr is no terminal (pipeline.epoch_progress)."""
    import io
    import sys

    import pipeline.pruning.run as run

    seen = []

    def fake_fit(*args, callbacks=None, **kwargs):
        seen.append([(type(c).__name__, getattr(c, "name", None)) for c in callbacks or []])
        return None  # as on a DDP rank other than 0: nothing else runs

    monkeypatch.setattr(run, "fit", fake_fit)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    trainer = TrainerCfg.model_validate({**params["trainer"], "enable_progress_bar": True})
    assert run_prune(dense, tiny_data, "hqs_l0", 0.5, PruneCfg(epochs=1), trainer, 0, tmp_path) is None
    assert run.finetune(dense, dense, tiny_data, FinetuneCfg(), trainer, 0, tmp_path) is None
    assert seen[0][-1] == ("EpochLines", "hqs_l0 sparsify") and seen[0][0][0] != "EpochLines"
    assert seen[1] == [("EpochLines", "pruned finetune")]
