"""Pruning to a latency target through a device table (pipeline/pruning/costs.py,
latency_target.py), on the toy network with a fake table whose cost is planted."""

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.latency.layers import ConvLayer, conv_layers
from pipeline.latency.table import Prediction
from pipeline.pruning.costs import Target
from pipeline.pruning.hqs_l0 import HqsL0, decide_by_score
from pipeline.pruning.latency_target import LEAST_COST_MS, LatencyCost, check_latency_reachable, latency_cost
from pipeline.pruning.removal import fold_and_remove
from pipeline.pruning.templates import attach_templates
from tests.test_pruning import TinyNet

SIZE = 16


class FakeTable:
    """A planted cost: arithmetic (c_in·c_out·k²·pixels) plus a step of 0.5 ms for every
    output width that is not a multiple of 4 (a layout change), so costs move with widths."""

    size = (SIZE, SIZE)
    fingerprint = {"cpu": "planted", "threads": 2}

    @staticmethod
    def layer_ms(layer: ConvLayer) -> float:
        k = layer.shape.kernel[0] * layer.shape.kernel[1]
        arithmetic = 1e-5 * layer.c_in * layer.c_out * k * layer.shape.height * layer.shape.width
        return arithmetic + (0.5 if layer.c_out % 4 else 0.0)

    def predict(self, layers: list[ConvLayer], residual_ms: float = 0.0) -> Prediction:
        table_ms = sum(self.layer_ms(layer) for layer in layers)
        return Prediction(table_ms + residual_ms, table_ms, residual_ms, 0)


def toy(step: int = 1) -> tuple[torch.nn.Module, object, LatencyCost]:
    torch.manual_seed(0)
    model = TinyNet().eval()
    templates = attach_templates(model, torch.randn(1, 3, SIZE, SIZE))
    cost = LatencyCost(templates, FakeTable(), residual_ms=2.0, step=step)
    templates.cost_model = cost
    return model, templates, cost


def random_keep(templates, seed: int) -> torch.Tensor:
    scores = torch.rand(templates.entries, generator=torch.Generator().manual_seed(seed))
    return templates.legal(scores > 0.5, scores)


def test_the_widths_a_keep_set_gives_are_the_pruned_models_and_so_is_the_prediction():
    for seed in range(3):
        model, templates, cost = toy()
        keep = random_keep(templates, seed)
        c_in, c_out = cost.widths(keep)
        predicted = cost.kept(keep)
        pruned = fold_and_remove(model, templates, templates.split(keep))
        real = conv_layers(pruned, SIZE, SIZE)
        assert [(layer.c_in, layer.c_out) for layer in real] == list(zip(c_in, c_out, strict=True))
        assert predicted == pytest.approx(FakeTable().predict(real, 2.0).total_ms)


def test_an_entrys_cost_is_its_groups_saving_per_channel_and_moves_with_the_widths():
    _, templates, cost = toy(step=4)  # 4 at a time: widths stay multiples of 4, so dropping saves time
    everything = torch.ones(templates.entries, dtype=torch.bool)
    group = templates.groups[0]
    fewer = everything.clone()
    fewer[group.offset : group.offset + 4] = False
    by_hand = (cost.kept(everything) - cost.kept(fewer)) / 4
    assert by_hand > 0
    assert cost.per_entry(everything)[group.offset : group.offset + group.size] == pytest.approx(
        torch.full((group.size,), by_hand))
    # a neighbouring group shrinks: the layers this group shares with it get cheaper, so does the entry
    others = [g for g in templates.groups if g is not group]
    shrunk = everything.clone()
    for g in others:
        shrunk[g.offset : g.offset + g.size // 2] = False
    assert not torch.allclose(cost.per_entry(shrunk)[group.offset], cost.per_entry(everything)[group.offset])


def test_an_entry_whose_removal_costs_time_gets_the_least_cost():
    _, templates, cost = toy(step=1)  # one channel less: a width off the multiples of 4, +0.5 ms per layer
    everything = torch.ones(templates.entries, dtype=torch.bool)
    group = templates.groups[0]
    fewer = everything.clone()
    fewer[group.offset] = False
    assert cost.kept(fewer) > cost.kept(everything)
    assert torch.all(cost.per_entry(everything)[group.offset : group.offset + group.size] == LEAST_COST_MS)


@pytest.mark.parametrize("share", [0.3, 0.8])
def test_a_latency_target_is_met_by_a_scored_decision_and_by_hqs_l0(share):
    _, templates, cost = toy()
    smallest = cost.kept(templates.legal(torch.zeros(templates.entries, dtype=torch.bool), -templates.cost))
    reduction = share * (1 - smallest / cost.dense)  # that share of the reachable cut
    check_latency_reachable(cost, templates, reduction, Target("latency_reduction", reduction))
    scores = torch.rand(templates.entries, generator=torch.Generator().manual_seed(1))
    keep, _ = decide_by_score(templates, scores, reduction)
    budget = cost.budget(reduction)
    assert cost.kept(keep) <= budget
    hqs = HqsL0(templates, reduction, steps=1, lr=1.0)
    assert cost.kept(hqs.keep) <= budget
    assert torch.equal(hqs.cost, cost.per_entry(torch.ones(templates.entries, dtype=torch.bool)))
    twin, twin_templates, _ = toy()  # the same network untouched by HQS-L0's z-step
    pruned = fold_and_remove(twin, twin_templates, twin_templates.split(keep))
    assert FakeTable().predict(conv_layers(pruned, SIZE, SIZE), 2.0).total_ms <= budget


def test_a_target_out_of_reach_or_above_dense_is_one_line():
    _, templates, cost = toy()
    with pytest.raises(PipelineError, match="out of reach") as err:
        check_latency_reachable(cost, templates, 0.999, Target("latency_ms", cost.dense * 0.001))
    assert "\n" not in str(err.value)
    with pytest.raises(PipelineError, match="not below the dense"):
        target = Target("latency_ms", cost.dense * 2)
        check_latency_reachable(cost, templates, target.reduction(cost.dense), target)


def test_a_latency_target_without_a_table_names_the_option():
    _, templates, _ = toy()
    with pytest.raises(PipelineError, match="--latency-table"):
        latency_cost(templates, None, Target("latency_reduction", 0.5))


@pytest.mark.parametrize(("kind", "value"), [("latency_ms", 0.0), ("macs_reduction", 1.2), ("latency", 0.5)])
def test_bad_targets_are_refused(kind, value):
    with pytest.raises(ValueError):
        Target(kind, value)


def test_a_latency_ms_target_is_the_share_of_the_dense_prediction():
    assert Target("latency_ms", 30.0).reduction(120.0) == pytest.approx(0.75)
    assert Target("latency_reduction", 0.5).reduction(120.0) == 0.5


def planted_table(model: torch.nn.Module, folder, size: int = 64) -> None:
    """A table folder for `model` whose timings are planted, far below real ones: c_in·c_out·
    pixels for a layer file, a constant for a context file, their sum plus 1 µs for the whole
    model; timed, it
    says, on this machine with one thread (so the pruned model is measured here too)."""
    import json

    from pipeline.latency.files import write_files
    from pipeline.machine import cpu_name

    layers = conv_layers(model, size, size)
    manifest = write_files(layers, folder, 16, 0.25, [size, size], "tiny", model=model)
    times = {}
    for name, spec in manifest["files"].items():
        if spec["kind"] == "layer":
            h, w = (size, size)
            times[name] = 1e-12 * spec["c_in"] * spec["c_out"] * h * w + 1e-6  # + both contexts' halves
        elif spec["kind"] == "context":
            times[name] = 1e-6
    dense = sum(1e-12 * layer.c_in * layer.c_out * size * size for layer in layers)
    times[next(n for n, s in manifest["files"].items() if s["kind"] == "model")] = dense + 1e-3
    (folder / "timings.json").write_text(json.dumps({"fingerprint": {"cpu": cpu_name(), "threads": 1},
                                                     "times_ms": times}))


def test_prune_meets_a_latency_target_through_a_table_folder_and_warns_on_a_measured_shortfall(
        tmp_path, tiny_data, params, caplog):
    from pipeline.artifact import load_model, save_model
    from pipeline.config import ModelCfg, PruneCfg, TrainCfg, TrainerCfg
    from pipeline.latency.table import LatencyTable
    from pipeline.models import create_model
    from pipeline.pruning.latency_target import LatencyPlan
    from pipeline.pruning.run import prune

    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    dense = tmp_path / "dense"
    save_model(create_model(cfg), dense, {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.5,
                                          "cost_size": 64, "metrics": {"val/iou": 0.0},
                                          "train": TrainCfg.model_validate(params["train"]).model_dump()})
    planted_table(load_model(dense)[0], tmp_path / "table")
    trainer = TrainerCfg.model_validate(params["trainer"])
    with caplog.at_level("WARNING"):
        pruned, card, record = prune(dense, tiny_data, "magnitude", Target("latency_reduction", 0.5),
                                     PruneCfg(epochs=1), trainer, 0, tmp_path / "logs",
                                     plan=LatencyPlan(tmp_path / "table"))
    latency = record["latency"]
    table = LatencyTable.from_folder(tmp_path / "table")
    assert latency["budget_ms"] == pytest.approx(0.5 * latency["dense_predicted_ms"])
    assert latency["dense_predicted_ms"] == pytest.approx(table.model_ms)  # the residual makes dense exact
    assert latency["predicted_ms"] <= latency["budget_ms"]
    again = table.predict(conv_layers(pruned, 64, 64), table.residual_ms()).total_ms  # the pruned model itself
    assert again == pytest.approx(latency["predicted_ms"])
    # planted milliseconds are far below real ones: the measurement misses the budget, and says so
    assert latency["measured_ms"] > latency["budget_ms"]
    assert any("over the" in r.getMessage() and "target" in r.getMessage() for r in caplog.records)
    assert card.macs_reduction == record["macs_reduction"] == pytest.approx(record["achieved_reduction"], abs=1e-4)
