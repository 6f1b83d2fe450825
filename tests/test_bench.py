"""The benchmark's bookkeeping and statistics (the benchmark itself runs from bench/, not here)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench.pldu import ROOT, load_config
from bench.pruned import steps_to_recover
from bench.records import RecordStore, module_files
from bench.stats import paired_bca
from bench.summary import summarise
from bench.tables import markdown


def counts(tp: list[int], fp: list[int], fn: list[int]) -> dict[str, list[int]]:
    n = len(tp)
    return {"tp": tp, "fp": fp, "fn": fn, "tol_pred_hit": tp, "tol_pred": [t + f for t, f in zip(tp, fp, strict=True)],
            "tol_true_hit": tp, "tol_true": [t + f for t, f in zip(tp, fn, strict=True)], "names": list(range(n))}


def test_the_preset_validates():
    bench, sections = load_config(ROOT / "bench" / "pldu.yaml")
    assert bench.seeds == [0, 1, 2] and {"hqs_l0", "hqs_l0_plain", "bn_l1", "group_l2"} <= set(bench.methods)
    assert bench.macs_reductions == [0.5, 0.75] and sections["prepare"].source == "pld-uav"
    assert set(bench.tune) == {"bn_l1", "group_l2"} and sections["train"].epochs >= 100  # early stopping ends it


def test_a_variant_sets_common_prune_keys_and_is_an_arm_of_its_own(tmp_path):
    from bench.pldu import Benchmark
    from bench.schedule import arm_options

    bench, sections = load_config(ROOT / "bench" / "pldu.yaml")
    bench = bench.model_copy(update={"variants": {"hqs_l0": [{"round_to": 8}, {"round_to": 16}]}})
    (tmp_path / "data").mkdir()
    b = Benchmark(bench, sections, tmp_path / "data", tmp_path / "work", tmp_path / "records")
    cfg = b.prune_cfg("bn_l1", {"round_to": 8, "reg": 1e-4})
    assert cfg.round_to == 8 and cfg.method_options("bn_l1")["reg"] == 1e-4
    assert b.prune_cfg("hqs_l0", None).round_to == sections["prune"].round_to == 16
    dense = {"model_hash": "0" * 16}
    plain, variant = (b.pruned_spec(0, dense, "hqs_l0", 0.5, o) for o in (None, {"round_to": 8}))
    assert variant[0] == "seed0/hqs_l0-0.5-round_to8" and plain[1]["config"] != variant[1]["config"]
    assert arm_options(b, "hqs_l0", None) == [None, {"round_to": 8}, {"round_to": 16}]
    assert arm_options(b, "bn_l1", {"reg": 1e-4}) == [{"reg": 1e-4}]


def test_a_latency_arm_is_keyed_by_its_target_the_table_and_the_latency_code(tmp_path):
    from bench.pldu import Benchmark
    from pipeline.pruning.costs import Target

    table = tmp_path / "work" / "latency-table"  # bench/device_table.py's folder
    table.mkdir(parents=True)
    for name, content in (("manifest.json", {"layers": []}), ("timings.json", {"times_ms": {"a": 1.0}})):
        (table / name).write_text(json.dumps(content))
    bench, sections = load_config(ROOT / "bench" / "pldu.yaml")
    bench = bench.model_copy(update={"latency_targets": [0.5], "latency_methods": ["hqs_l0"]})
    (tmp_path / "data").mkdir()
    dense = {"model_hash": "0" * 16}
    b = Benchmark(bench, sections, tmp_path / "data", tmp_path / "work", tmp_path / "records")
    name, inputs, _ = b.pruned_spec(0, dense, "hqs_l0", Target("latency_reduction", 0.5))
    mac_name, mac_inputs, _ = b.pruned_spec(0, dense, "hqs_l0", 0.5)
    assert name == "seed0/hqs_l0-latency0.5" and inputs["code"] != mac_inputs["code"]
    assert b.plan(Target("latency_reduction", 0.5)) is not None and b.plan(0.5) is None
    (table / "timings.json").write_text(json.dumps({"times_ms": {"a": 2.0}}))  # re-timed
    again = Benchmark(bench, sections, tmp_path / "data", tmp_path / "work", tmp_path / "records")
    assert again.pruned_spec(0, dense, "hqs_l0", Target("latency_reduction", 0.5))[1]["config"] != inputs["config"]


def test_steps_to_recover():
    curve = [(9, 0.30), (19, 0.36), (29, 0.41)]
    assert steps_to_recover(0.2, curve, 0.35) == 20
    assert steps_to_recover(0.36, curve, 0.35) == 0  # already within after removal
    assert steps_to_recover(0.2, curve, 0.50) is None  # never within the budget


def record(arm: str, seed: int, fp: int, val: float, method: str | None = None, target: float | None = None,
           **extra) -> dict:
    c = counts([50] * 4, [fp] * 4, [20] * 4)
    name = f"seed{seed}/{method}-{target}" if method else f"seed{seed}/{arm}"
    base = {"name": name, "arm": arm, "seed": seed, "test_counts": c, "val_score": val, "gmacs": 1.0,
            "epochs": 9, "train_tmacs": 10.0, "seconds": 60.0}
    if method:
        base.update({"method": method, "macs_reduction": target, "achieved_reduction": target, "after_counts": c,
                     "steps_to_recover": 30, "saliency_gap": 2.0, "options": {}})
    return {**base, **extra}


def test_summary_marks_failed_runs_and_compares_with_the_control():
    dense = {s: record("dense", s, 20, 0.40, cap_reached=False) for s in (0, 1)}
    runs = [record("control", s, 20, 0.41) for s in (0, 1)]
    runs += [record("pruned", s, 10, 0.40, "hqs_l0", 0.75) for s in (0, 1)]
    runs += [record("pruned", 0, 40, 0.39, "bn_l1", 0.75), record("pruned", 1, 900, 0.05, "bn_l1", 0.75)]
    tuning = [record("pruned", 0, 40, 0.3, "bn_l1", 0.75, options={"reg": 1e-3})]
    found = {"dense": dense, "runs": runs, "tuned": {"bn_l1": {"reg": 1e-4}}, "tuning": tuning, "missing": [],
             "bsds": {}}
    summary = summarise(found, n_resamples=199)
    rows = {(r["arm"], r["macs_reduction"]): r for r in summary["rows"]}
    hqs, bn = rows[("hqs_l0", 0.75)], rows[("bn_l1", 0.75)]
    assert bn["failed"] == [1] and hqs["failed"] == [] and rows[("control", None)]["failed"] == []
    assert hqs["vs_control"]["iou"]["mean"] == pytest.approx(100 / 160 - 100 / 180)  # seeds pooled per image
    assert bn["vs_hqs_l0"]["iou"]["mean"] < 0 and "vs_hqs_l0" not in hqs
    assert hqs["vs_control"]["iou"]["seed_std"] == 0  # the same difference on both seeds
    assert bn["tuning_tmacs"] == 10.0 and hqs["tuning_tmacs"] == 0
    text = markdown({**summary, "versions": {"torch": "x"}, "commit": "abc", "dirty": False, "config": "c",
                     "test_images": 4})
    assert "bn_l1 -75% **(failed: seed 1)**" in text and "hqs_l0 -75% |" in text
    assert "| 1 | hqs_l0 -75% |" in text and "| 2 | bn_l1 -75% **(failed" in text  # failed ranks last


def test_the_ranking_orders_by_val_not_test():
    dense = {0: record("dense", 0, 20, 0.40, cap_reached=False)}
    runs = [record("pruned", 0, 10, 0.40, "hqs_l0", 0.5), record("pruned", 0, 30, 0.45, "magnitude", 0.5),
            record("pruned", 0, 5, 0.42, "random", 0.5)]  # magnitude: best val, worst test
    summary = summarise({"dense": dense, "runs": runs, "tuned": {}, "tuning": [], "missing": [], "bsds": {}}, 199)
    from bench.tables import ranking_table

    lines = [line for line in ranking_table(summary["rows"]) if line.startswith("| ") and "rank" not in line]
    assert [line.split(" | ")[1] for line in lines] == ["magnitude -50%", "random -50%", "hqs_l0 -50%"]


def test_an_arm_short_of_seeds_is_named_not_ranked():
    dense = {s: record("dense", s, 20, 0.40, cap_reached=False) for s in (0, 1)}
    runs = [record("pruned", s, 10, 0.40, "hqs_l0", 0.5) for s in (0, 1)] + [record("pruned", 0, 5, 0.9, "chip", 0.5)]
    summary = summarise({"dense": dense, "runs": runs, "tuned": {}, "tuning": [], "missing": [], "bsds": {}}, 199)
    from bench.tables import ranking_table

    text = "\n".join(ranking_table(summary["rows"]))
    assert "| 1 | hqs_l0 -50% |" in text and "Not ranked, fewer seeds: chip -50% (1)." in text


def test_a_record_whose_inputs_changed_is_not_current(tmp_path):
    store = RecordStore(tmp_path)
    inputs = {"code": "a", "data": "b", "start": "c", "config": "d"}
    store.save("seed0/dense", inputs, {"val_score": 0.4})
    assert store.current("seed0/dense", inputs)["val_score"] == 0.4
    assert store.current("seed0/dense", {**inputs, "code": "z"}) is None
    assert store.load("seed0/dense")["commit"]  # the commit and the versions travel with it


def test_a_run_hashes_the_code_it_imports_but_not_the_method_list():
    files = {str(p) for p in module_files("bench.pruned")}
    assert "pipeline/pruning/run.py" in files and "pipeline/train.py" in files
    assert "pipeline/pruning/registry.py" not in files  # adding a method must not re-run the others
    assert "bench/summary.py" not in files and "bench/records.py" not in files


@pytest.mark.parametrize("run", ["bench.dense", "bench.pruned", "bench.bsds", "bench.matched", "bench.tail_models",
                                 "bench.latency_run"])
def test_a_record_hashes_its_run_not_the_benchmark_bookkeeping(run):
    """Editing bench.pldu (names, scheduling, summaries) must not make every seed's records
    stale: a seed's models are on one machine only, so stale records could not be re-run."""
    files = {str(p) for p in module_files(run)}
    assert f"{run.replace('.', '/')}.py" in files
    assert not files & {"bench/pldu.py", "bench/schedule.py", "bench/summary.py", "bench/latency.py", "bench/tail.py"}


def test_bca_interval_excludes_zero_for_a_consistent_gain_and_pools_seeds():
    rng = np.random.default_rng(1)
    tp = rng.integers(50, 100, 20).tolist()
    base, better = counts(tp, [30] * 20, [30] * 20), counts(tp, [10] * 20, [30] * 20)
    out = paired_bca([better, better], [base, base], n_resamples=999)
    pooled = (2 * sum(tp)) / (2 * sum(tp) + 2 * 200 + 2 * 600)  # the seeds' counts summed, then the IoU
    assert out["mean"] == pytest.approx(pooled - (2 * sum(tp)) / (2 * sum(tp) + 2 * 600 + 2 * 600))
    assert out["method"] == "BCa" and 0 < out["ci95"][0] < out["mean"] < out["ci95"][1]
    flipped = paired_bca([base], [better], n_resamples=999)
    assert flipped["ci95"][1] < 0


def test_bca_pairs_images_by_id_not_by_position():
    a = counts([10, 20, 30, 40], [1, 2, 3, 4], [4, 3, 2, 1])
    shuffled = {key: list(reversed(value)) for key, value in a.items()}  # same images, other order
    out = paired_bca([shuffled], [a], n_resamples=199)
    assert out["mean"] == 0 and out["ci95"] == [0.0, 0.0]
    missing = {key: value[:3] for key, value in a.items()}
    with pytest.raises(ValueError, match="do not align"):
        paired_bca([missing], [a], n_resamples=199)


def test_the_code_hash_ignores_comments_and_docstrings_not_code(tmp_path):
    from bench.records import code_text

    path = tmp_path / "m.py"
    path.write_text('"""Doc."""\n\ndef f(x):\n    """Say what."""\n    return x + 1  # why\n')
    before = code_text(path)
    path.write_text('"""Other doc."""\n\ndef f(x):\n    # a new comment\n    return x + 1\n')
    assert code_text(path) == before
    path.write_text('"""Doc."""\n\ndef f(x):\n    return x + 2\n')
    assert code_text(path) != before


def test_the_benchmark_runs_reuses_current_records_and_reruns_changed_ones(tmp_path, capsys):
    """bench.pldu end to end on the tiny synthetic preset: records, summary, resumption."""
    import yaml

    from bench.pldu import main
    from tests.conftest import tiny_params

    params = {k: v for k, v in tiny_params().items() if k in ("base", "prepare", "model", "train", "trainer",
                                                                "prune", "finetune")}
    params["bench"] = {"seeds": [0], "methods": ["hqs_l0", "magnitude"], "macs_reductions": [0.5],
                       "bootstrap": 100, "bsds": True}
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump(params))
    args = ["--config", str(config), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    main([*args, "--workers", "2"])  # the control, the pruned runs and BSDS in two spawned processes
    records = tmp_path / "out" / "pldu" / "seed0"
    runs = {"dense", "control", "hqs_l0-0.5", "magnitude-0.5"}  # magnitude: the only baseline, so the best
    assert {p.name for p in records.iterdir()} == {f"{prefix}{run}.json" for run in runs for prefix in ("", "bsds-")}
    hqs = json.loads((records / "hqs_l0-0.5.json").read_text())
    assert hqs["masking"]["after_zeroing"] >= 0 and hqs["train_tmacs"] > hqs["finetune_tmacs"] > 0
    assert json.loads((records / "magnitude-0.5.json").read_text())["recalibrated"]
    machine = hqs["machine"]  # a seed's records must come from one kind of CPU: each says which
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1 and machine["cpu"]
    summary = json.loads((tmp_path / "out" / "pldu.json").read_text())
    assert summary["missing"] == [] and {r["arm"] for r in summary["rows"]} == {"dense", "control", "hqs_l0",
                                                                                 "magnitude"}
    assert all(0 <= r["bsds"]["ods"]["mean"] <= r["bsds"]["ois"]["mean"] <= 1 for r in summary["rows"])
    capsys.readouterr()
    main(args)  # everything current: nothing runs again
    assert ": running" not in capsys.readouterr().out
    params["finetune"]["lr"] = 0.002  # the pruned runs and the control read it; the dense run does not
    config.write_text(yaml.safe_dump(params))
    main(args)
    ran = capsys.readouterr().out
    assert "seed0/control: running" in ran and "seed0/magnitude-0.5: running" in ran
    assert "seed0/dense: running" not in ran and "seed0/bsds-dense: matching" not in ran
    assert "seed0/bsds-control: matching" in ran  # its model changed
    shutil.rmtree(tmp_path / "work" / "seed0")  # a fresh machine: records committed, models gone
    main(args)
    assert ": running" not in capsys.readouterr().out  # nothing needs the models again


def test_summary_of_no_records_is_empty_not_an_error():
    found = {"dense": {}, "runs": [], "tuned": {}, "tuning": [], "missing": ["seed0/dense"], "bsds": {}}
    summary = summarise(found, n_resamples=199)
    assert summary["rows"] == [] and summary["missing"] == ["seed0/dense"]
