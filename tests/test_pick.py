"""The pick rule: the cheapest model within `max_iou_drop` of the dense val score, failed runs
excluded, dense when nothing qualifies; test figures never decide."""

from __future__ import annotations

import pytest

from pipeline.errors import PipelineError
from pipeline.pick import DENSE, choose
from pipeline.sections import PickCfg
from pipeline.selection import SCORE

DENSE_ROW = {SCORE: 0.50, "gmacs": 4.0, "mparams": 12.0, "test/iou": 0.48}


def runs() -> dict[str, dict]:
    """A failed run (cheapest), a cheaper-but-too-inaccurate run, a run that qualifies, and a
    dearer run that qualifies too."""
    return {
        "dead-0.9": {SCORE: 0.10, "gmacs": 0.4, "mparams": 1.0, "test/iou": 0.09},  # below half of dense
        "rough-0.75": {SCORE: 0.47, "gmacs": 1.0, "mparams": 3.0, "test/iou": 0.49},  # drop 0.03
        "good-0.5": {SCORE: 0.495, "gmacs": 2.0, "mparams": 6.0, "test/iou": 0.46},  # drop 0.005
        "fine-0.25": {SCORE: 0.499, "gmacs": 3.0, "mparams": 2.0, "test/iou": 0.47},  # drop 0.001
    }


def test_the_cheapest_run_within_the_drop_wins_over_failed_and_inaccurate_ones():
    picked = choose(DENSE_ROW, runs(), PickCfg(max_iou_drop=0.01, objective="gmacs"))
    assert picked["choice"] == "good-0.5"
    table = {row["model"]: row for row in picked["candidates"]}
    assert table["dead-0.9"]["failed"] and not table["dead-0.9"]["qualifies"]
    assert not table["rough-0.75"]["failed"] and not table["rough-0.75"]["qualifies"]
    assert table["rough-0.75"]["verdict"] == "val drop 0.030 > 0.010"
    assert table[DENSE]["qualifies"] and list(table)[0] == DENSE
    assert "`rough-0.75` (val drop 0.030)" in picked["reason"] and "`dead-0.9` (failed)" in picked["reason"]
    assert "\n" not in picked["reason"]
    assert picked["rule"] == {"max_iou_drop": 0.01, "objective": "gmacs", "model": None}


def test_test_figures_never_decide():
    better_on_test = runs()
    better_on_test["rough-0.75"]["test/iou"] = 0.99  # the too-inaccurate run shines on test: still out
    assert choose(DENSE_ROW, better_on_test, PickCfg(max_iou_drop=0.01))["choice"] == "good-0.5"


def test_the_objective_and_the_drop_change_the_choice():
    assert choose(DENSE_ROW, runs(), PickCfg(max_iou_drop=0.01, objective="mparams"))["choice"] == "fine-0.25"
    assert choose(DENSE_ROW, runs(), PickCfg(max_iou_drop=0.05))["choice"] == "rough-0.75"
    exact = {"edge-0.5": {**runs()["good-0.5"], SCORE: 0.49}}  # a drop of exactly max_iou_drop qualifies
    assert choose(DENSE_ROW, exact, PickCfg(max_iou_drop=0.01))["choice"] == "edge-0.5"


def test_a_near_tie_on_cost_goes_to_the_better_val_score():
    near = {"bn_l1-0.5": {**runs()["good-0.5"], "gmacs": 2.000},
            "hqs_l0-0.5": {**runs()["good-0.5"], SCORE: 0.499, "gmacs": 2.001}}  # 0.05 % dearer, better on val
    picked = choose(DENSE_ROW, near, PickCfg(max_iou_drop=0.01))
    assert picked["choice"] == "hqs_l0-0.5"
    assert "`bn_l1-0.5` cost the same within 1%" in picked["reason"]
    clearly_dearer = {**near, "hqs_l0-0.5": {**near["hqs_l0-0.5"], "gmacs": 2.1}}  # 5 % dearer: cost decides
    assert choose(DENSE_ROW, clearly_dearer, PickCfg(max_iou_drop=0.01))["choice"] == "bn_l1-0.5"


def test_dense_is_shipped_with_the_reason_when_nothing_qualifies():
    too_far = {name: row for name, row in runs().items() if name in ("dead-0.9", "rough-0.75")}
    picked = choose(DENSE_ROW, too_far, PickCfg(max_iou_drop=0.01))
    assert picked["choice"] == DENSE
    assert "closest, `rough-0.75`, is 0.030 below" in picked["reason"]
    only_failed = choose(DENSE_ROW, {"dead-0.9": runs()["dead-0.9"]}, PickCfg())
    assert only_failed["choice"] == DENSE and "every fine-tuned run failed" in only_failed["reason"]
    assert choose(DENSE_ROW, {}, PickCfg())["choice"] == DENSE


def test_a_forced_model_is_shipped_and_says_what_the_rule_would_pick():
    picked = choose(DENSE_ROW, runs(), PickCfg(model="dead-0.9"))
    assert picked["choice"] == "dead-0.9" and picked["forced"]
    assert "would ship `good-0.5`" in picked["reason"] and "failed run" in picked["reason"]
    verdicts = {row["model"]: row["verdict"] for row in picked["candidates"]}
    assert verdicts["dead-0.9"] == "chosen (pick.model)" and "overridden" in verdicts["good-0.5"]
    with pytest.raises(PipelineError, match="pick.model: 'nope-0.5'"):
        choose(DENSE_ROW, runs(), PickCfg(model="nope-0.5"))


def test_the_stage_ships_a_copy_of_the_chosen_model_and_refuses_export_model(tmp_path, tiny_data, params, capsys):
    import json
    import subprocess
    from datetime import datetime

    import yaml

    from pipeline.artifact import load_card, save_model
    from pipeline.card import TrainingData
    from pipeline.config import ModelCfg
    from pipeline.models import create_model
    from pipeline.stages import pick

    reports, checkpoints = tmp_path / "reports", tmp_path / "checkpoints"
    (reports / "finetune").mkdir(parents=True)
    widths = {"dense": [16, 16, 8, 8, 8], "final/hqs_l0-0.5": [8, 8, 8, 8, 8], "final/magnitude-0.5": [8, 8, 4, 4, 4]}
    for folder, channels in widths.items():  # threshold 0: every pixel is line, so test IoU has an interval
        cfg = ModelCfg.model_validate({**params["model"], "decoder": {"Unet": {"decoder_channels": channels}}})
        save_model(create_model(cfg), checkpoints / folder,
                   {"model": cfg.model_dump(), "num_classes": 2, "threshold": 0.0, "method": "hqs_l0",
                    "macs_reduction": 0.5, "training_data": TrainingData.read(tiny_data).model_dump()})
    (reports / "loss.json").write_text(json.dumps({"winner": "d", "candidates": {"d": {SCORE: 0.5, "test/iou": 0.5}}}))
    for run, score in (("hqs_l0-0.5", 0.495), ("magnitude-0.5", 0.1)):  # magnitude: cheaper, failed
        (reports / "finetune" / f"{run}.json").write_text(json.dumps({"final": {SCORE: score, "test/iou": 0.4}}))
    settings = {"sweep": {"methods": ["hqs_l0", "magnitude"], "macs_reductions": [0.5]}, "pick": {"max_iou_drop": 0.01}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    args = ["--params", str(tmp_path / "params.yaml"), "--reports", str(reports), "--checkpoints", str(checkpoints),
            "--data", str(tiny_data), "--out", str(reports / "pick.json"), "--ship", str(checkpoints / "ship")]
    pick.main(args)
    picked = json.loads((reports / "pick.json").read_text())
    assert picked["choice"] == "hqs_l0-0.5" and picked["cost_size"] == [64, 64]
    assert [row["model"] for row in picked["candidates"]] == ["dense", "hqs_l0-0.5", "magnitude-0.5"]
    assert (checkpoints / "ship" / "model.pt").read_bytes() == (checkpoints / "final/hqs_l0-0.5/model.pt").read_bytes()
    card = load_card(checkpoints / "ship")  # the shipped model's card
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert card.commit.startswith(head) and datetime.fromisoformat(card.created).tzinfo is not None
    assert card.input_size == [64, 64] and card.training_data.source == "synthetic"
    assert set(card.intervals) == {"test/iou", "test/tol_f1"}
    assert all(low <= high for low, high in card.intervals.values()) and card.intervals["test/iou"][1] > 0
    assert "64x64" in card.intended_use
    assert "synthetic wires only" in card.limits[0] and any("hqs_l0" in limit for limit in card.limits)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**settings, "export": {"model": "hqs_l0-0.5"}}))
    with pytest.raises(SystemExit):
        pick.main(args)
    assert "export.model is no longer read" in capsys.readouterr().err


def test_dvc_reruns_the_pick_stage_when_the_export_section_changes():
    """The stage reads params `export` (refuse_export_model): DVC must list it, or adding a
    stale export.model would leave the stage cached instead of refused."""
    import yaml

    from tests.conftest import ROOT

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert {"pick", "sweep", "export"} <= set(stages["pick"]["params"])
    assert "| `pick` | `pick`, `sweep`, `export`" in (ROOT / "README.md").read_text()
