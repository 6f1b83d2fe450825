"""The latency benchmark's bookkeeping: round_to choice, the device table, the latency summary,
the matched MAC arm and the tail study (the benchmarks themselves run from bench/, not here)."""

from __future__ import annotations

import json

import pytest

from bench.pldu import ROOT, load_config
from bench.records import RecordStore
from tests.test_bench import counts


def test_the_round_to_default_is_the_fastest_within_half_a_point_of_null_on_val():
    from bench.round_to import choose

    def row(target, round_to, ms, val_vs_null=None):
        return {"macs_reduction": target, "round_to": round_to, "median_ms": ms,
                **({} if val_vs_null is None else {"val_vs_null": val_vs_null})}

    rows = [row(0.5, None, 80), row(0.5, 8, 70, -0.002), row(0.5, 16, 60, -0.004),
            row(0.75, None, 50), row(0.75, 8, 45, -0.001), row(0.75, 16, 40, -0.008)]
    assert choose(rows)["round_to"] == 8  # 16 is faster but loses 0.8 point at -75 %
    rows[-1]["val_vs_null"] = -0.004
    assert choose(rows)["round_to"] == 16
    assert choose([row(0.5, None, 80), row(0.5, 8, 90, 0.0)])["round_to"] is None  # rounding made it slower


def test_the_device_table_is_made_again_only_when_timed_on_another_machine(tmp_path, monkeypatch):
    from bench.device_table import ensure_table, table_folder
    from pipeline.config import ModelCfg
    from pipeline.latency import files
    from pipeline.machine import cpu_name

    made = []

    def write_files(*args):  # stands in for writing and timing thousands of files
        made.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "write_files", write_files)
    folder = table_folder(tmp_path)
    folder.mkdir(parents=True)
    for cpu, remade in ((cpu_name(), False), ("another CPU", True)):
        (folder / "timings.json").write_text(json.dumps({"fingerprint": {"cpu": cpu, "threads": 2}}))
        if remade:
            with pytest.raises(KeyboardInterrupt):
                ensure_table(tmp_path, ModelCfg(), 8)
        else:
            assert ensure_table(tmp_path, ModelCfg(), 8) == folder
        assert len(made) == remade


def test_the_latency_summary_pairs_int8_with_its_own_fp32_and_checks_the_goals():
    from bench.latency_summary import arm_rows, goals

    def row(tp: int, ms: float, speedup: float, int8: tuple[int, float, float] | None = None) -> dict:
        formats = {"fp32": counts([tp] * 4, [10] * 4, [10] * 4)}
        out = {"fp32": {"median_ms": ms, "speedup": speedup},
               "int8_check": {"accepted": int8 is not None, "kept_fp32": [] if int8 else None}}
        if int8:
            formats["int8"] = counts([int8[0]] * 4, [10] * 4, [10] * 4)
            out["int8"] = {"median_ms": ms / int8[1], "speedup": speedup * int8[1], "x_fp32": int8[1]}
        return {**out, "test_counts": formats}

    records = {seed: {"rows": {"dense": row(100, 120.0, 1.0),
                               "hqs_l0-latency0.75": row(99, 35.0, 3.4, (90, 2.0, 0.0))}}
               for seed in (0, 1)}
    rows = arm_rows(records, 200)
    by = {(r["arm"], r["format"]): r for r in rows}
    assert by["hqs_l0-latency0.75", "fp32"]["iou_vs_reference"]["mean"] == pytest.approx(99 / 119 - 100 / 120)
    assert by["hqs_l0-latency0.75", "int8"]["iou_vs_reference"]["mean"] == pytest.approx(90 / 110 - 99 / 119)
    met = {g["goal"].split(":")[0]: g["met"] for g in goals(rows)}
    assert met["latency target 1/4 of dense"] is True  # 3.4x, -0.2 point
    assert met["INT8 adds >= 1.8x with <= 1 further IoU point"] is False  # 2x faster but -1.4 points
    assert met["a pruned FP32 model at or under 60 ms per 540x360 image on 2 threads"] is True
    shallower = [{**r, "arm": r["arm"].replace("0.75", "0.65")} for r in rows]  # 1/4 out of reach: not met
    goal = goals(shallower)[0]
    assert goal["met"] is False and "measured at hqs_l0-latency0.65" in goal["measured"]


def test_the_matched_mac_target_is_bisected_to_the_reference_latency():
    from bench.matched import bisect_reduction

    def ratio_at(reduction: float) -> float:  # a model's latency falls linearly with its MAC cut
        return (1 - reduction) / (1 - 0.8125)  # the reference's latency sits at a cut of 81.25 %

    reduction, trace = bisect_reduction(ratio_at, start=0.6, low=0.5, high=0.9, tolerance=0.02, probes=8)
    assert [p["reduction"] for p in trace] == [0.6, 0.75, 0.825, 0.7875, 0.8062, 0.8156]
    assert reduction == 0.8156  # the first probe within 2 % of the reference's latency: the search stops
    limited, short = bisect_reduction(ratio_at, start=0.6, low=0.5, high=0.9, tolerance=0.02, probes=2)
    assert len(short) == 2 and limited == 0.75  # out of probes: the nearest probed one


def test_the_latency_summary_compares_the_latency_arm_with_its_matched_mac_arm():
    from bench.latency_summary import MATCHED, goals, matched_difference, matched_goal

    QUARTER = "hqs_l0-latency0.65"  # the deepest latency arm, whatever its target

    def rows(tp: int) -> dict:
        return {"test_counts": {"fp32": counts([tp] * 4, [10] * 4, [10] * 4)}}

    for quarter_tp, matched_tp, met in ((99, 95, True), (90, 95, False)):
        records = {seed: {"rows": {QUARTER: rows(quarter_tp), MATCHED: rows(matched_tp)}} for seed in (0, 1)}
        difference = matched_difference(records, 200)
        assert difference["mean"] == pytest.approx(quarter_tp / (quarter_tp + 20) - matched_tp / (matched_tp + 20))
        by = {(QUARTER, "fp32"): {"median_ms": 35.0}, (MATCHED, "fp32"): {"median_ms": 35.5}}
        goal = [g for g in goals([], difference) if g["goal"].startswith("the latency-targeted")]
        assert goal[0]["met"] is None  # no rows: not measured
        assert matched_goal(by, difference)["met"] is met
    assert matched_difference({0: {"rows": {QUARTER: rows(90)}}}, 200) is None


def test_a_matched_probe_prunes_the_dense_model_and_times_it_against_the_latency_arm(tmp_path, tiny_data, params,
                                                                                     monkeypatch):
    """bench.matched's probe on the tiny Unet, with a fake clock where latency is MACs: the
    ratio is the probe's MACs over the reference's (here the dense model itself)."""
    from types import SimpleNamespace

    import torch

    from bench import matched
    from pipeline import speed
    from pipeline.artifact import save_model
    from pipeline.config import ModelCfg, PruneCfg, TrainCfg, TrainerCfg
    from pipeline.measure import macs_and_params
    from pipeline.models import create_model

    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    save_model(create_model(cfg), tmp_path / "dense", {"model": cfg.model_dump(), "num_classes": 2, "cost_size": 64,
                                                       "train": TrainCfg.model_validate(params["train"]).model_dump()})

    def fake_time(models, reference, height, width, threads, rounds=20, **_):
        ms = {key: macs_and_params(model, 64)[0] / 1e6 for key, (model, _) in models.items()}
        return {key: {"median_ms": value, "times_ms": [value] * rounds} for key, value in ms.items()}

    monkeypatch.setattr(speed, "time_as_onnx", fake_time)
    prune_cfg = PruneCfg.model_validate({**params["prune"], "epochs": 1, "round_to": None})
    b = SimpleNamespace(data=tiny_data, sections={"trainer": TrainerCfg.model_validate(params["trainer"])},
                        prune_cfg=lambda method, options: prune_cfg)
    ratio_at = matched._prober(b, 0, tmp_path / "dense", tmp_path / "dense", None, threads=1)
    assert ratio_at(0.5) == pytest.approx(0.5, abs=0.02)  # HQS-L0 at -50 % MACs: half the reference's "time"
    coarse = PruneCfg.model_validate({**params["prune"], "round_to": 8})
    assert 0.5 < matched.reachable(tmp_path / "dense", coarse) < matched.reachable(tmp_path / "dense", prune_cfg) < 1


def test_a_tail_run_transplants_the_dense_model_into_a_half_resolution_head(tmp_path, tiny_data, params):
    """bench.tail on the tiny Unet: a half-resolution 1x1 head takes every dense tensor of
    the same shape (only the head's kernel starts fresh; the last decoder block is gone),
    trains as long as the control and predicts at full size."""
    import torch

    from bench.tail_models import tail_run
    from pipeline.artifact import save_model
    from pipeline.config import FinetuneCfg, ModelCfg, PruneCfg, TrainCfg, TrainerCfg
    from pipeline.models import create_model

    cfg = ModelCfg.model_validate(params["model"])
    torch.manual_seed(0)
    dense = tmp_path / "dense"
    save_model(create_model(cfg), dense, {"model": cfg.model_dump(), "num_classes": 2, "cost_size": 64,
                                          "train": TrainCfg.model_validate(params["train"]).model_dump()})
    sections = {"model": cfg, "trainer": TrainerCfg.model_validate(params["trainer"]),
                "prune": PruneCfg.model_validate(params["prune"]),
                "finetune": FinetuneCfg.model_validate(params["finetune"])}
    record = tail_run(sections, tiny_data, dense, tmp_path / "tail", 0, {"head_upsampling": 2, "head_kernel_size": 1})
    assert record["fresh"] == ["segmentation_head.0.weight"]
    assert record["epochs"] == sections["prune"].epochs + sections["finetune"].epochs
    assert len(record["test_counts"]["tp"]) == 4  # the tiny set's test images, at full size
    state = torch.load(tmp_path / "tail" / "model" / "model.pt", weights_only=True)
    assert state["segmentation_head.0.weight"].shape[-2:] == (1, 1)
    assert not any(k.startswith("decoder.blocks.4.") for k in state)  # the full-resolution block is gone


@pytest.mark.parametrize("options", [{"head_kernel_size": 2}, {"head_upsampling": 4}])
def test_a_bad_tail_fails_naming_the_option(options):
    from bench.tail_models import set_head
    from pipeline.config import ModelCfg
    from pipeline.models import create_model

    with pytest.raises(SystemExit, match="bench.tails: head_kernel_size"):
        set_head(create_model(ModelCfg()), **options)


@pytest.mark.parametrize(("val_drops", "wins"), [((0.005, 0.008), True), ((0.005, 0.02), False)])
def test_a_tail_wins_when_faster_and_within_reach_of_the_control_on_every_seed(tmp_path, val_drops, wins):
    from bench.pldu import Benchmark
    from bench.tail import latency_inputs, tail_rows, tail_spec

    bench, sections = load_config(ROOT / "bench" / "pldu.yaml")
    bench = bench.model_copy(update={"seeds": [0, 1], "tails": {"half": {"head_upsampling": 2}}})
    (tmp_path / "data").mkdir()
    b = Benchmark(bench, sections, tmp_path / "data", tmp_path / "work", tmp_path / "records")
    store = RecordStore(tmp_path / "tail")
    for seed, drop in zip((0, 1), val_drops, strict=True):
        name, inputs, _ = b.dense_spec(seed)
        dense = b.store.save(name, inputs, {"seed": seed, "model_hash": str(seed) * 16, "val_score": 0.5})
        name, inputs, _ = b.control_spec(seed, dense)
        control, tail = counts([90] * 4, [10] * 4, [10] * 4), counts([85] * 4, [12] * 4, [12] * 4)
        b.store.save(name, inputs, {"seed": seed, "val_score": 0.5, "test_counts": control})
        store.save(*tail_spec(b, dense, "half"), {"val_score": 0.5 - drop, "test_counts": tail})
    timing = {"preset": {"median_ms": 80.0, "speedup": 1.0}, "half": {"median_ms": 68.0, "speedup": 1.18}}
    latency = store.save("latency", latency_inputs(b), {"rows": timing})
    rows = {r["tail"]: r for r in tail_rows(b, store, latency)}
    assert rows["half"]["winner"] is wins and rows["half"]["ms_saved"] == pytest.approx(12.0)
    assert rows["half"]["iou_vs_control"]["mean"] == pytest.approx(85 / 109 - 90 / 110)
    assert rows["preset"]["seeds"] == [0, 1] and "winner" not in rows["preset"]


def test_a_summary_leaves_out_a_seed_whose_chain_is_unfinished_but_measuring_stops(monkeypatch, capsys):
    from bench import latency

    def unfinished(b, seed):
        raise SystemExit(f"seed{seed}/hqs_l0-latency0.65: no current record")

    monkeypatch.setattr(latency, "arms_of", unfinished)
    assert latency.seed_record(None, None, 2, threads=2, rounds=20, measure=False) is None
    assert "seed2 left out of the summary: seed2/hqs_l0-latency0.65" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no current record"):
        latency.seed_record(None, None, 2, threads=2, rounds=20, measure=True)


def test_the_latency_results_name_the_load_average_around_each_seeds_timing():
    from bench.latency_summary import markdown

    result = {"versions": {"onnxruntime": "1"}, "threads": 2, "seeds": [0, 2], "machines": ["cpu"], "rows": [],
              "load_average": {0: [0.51, 0.62], 2: [2.2, 2.1]}, "matched_macs_reduction": {}, "goals": []}
    assert "seed 0: 0.51 / 0.62; seed 2: 2.20 / 2.10." in markdown(result)
