"""The device latency table: layer enumeration, its ONNX files, the predictor, the device
script. Nothing here is timed: timings are planted, or only checked to exist."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zlib

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pipeline.config import ModelCfg
from pipeline.errors import PipelineError
from pipeline.latency.files import MANIFEST, MODEL, context_model, layer_model, write_files
from pipeline.latency.layers import ConvLayer, conv_layers
from pipeline.latency.table import LatencyTable, check, residual_ms
from pipeline.models import create_model
from tests.conftest import ROOT


class Small(nn.Module):
    """stem 3 -> a, strided a -> b, depthwise b, 1x1 head b -> 1: each kind of layer the table keys."""

    def __init__(self, a: int = 16, b: int = 24) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, a, 3, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(b, b, 3, padding=1, groups=b, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        self.head = nn.Conv2d(b, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dw(self.down(self.stem(x))))


def planted_cost(key: str, c_in: int, c_out: int) -> float:
    """A known cost per shape: bilinear in the widths (linear along a depthwise diagonal)."""
    a, b, c, d = np.random.default_rng(zlib.crc32(key.encode())).uniform(0.001, 0.01, 4)
    return (0.0 if "_dw_" in key else a * c_in * c_out) + b * c_in + c * c_out + d


UNSEEN_MS = 3.0  # what the planted whole model costs beyond its convolutions


def planted_timings(manifest: dict, seed: int = 0) -> dict:
    """Device timings whose layer files cost planted_cost plus half of each (random) context,
    and whose whole model (if any) costs its layers' planted_cost plus UNSEEN_MS."""
    rng = np.random.default_rng(seed)
    files = manifest["files"]
    times = {name: float(rng.uniform(0.1, 2.0)) for name, spec in files.items() if spec["kind"] == "context"}
    for name, spec in files.items():
        if spec["kind"] == "layer":
            context = sum(times[c] for c in spec["contexts"]) / 2
            times[name] = planted_cost(spec["key"], spec["c_in"], spec["c_out"]) + context
        elif spec["kind"] == "model":
            layers = [ConvLayer.from_dict(layer) for layer in manifest["layers"]]
            times[name] = sum(planted_cost(la.shape.key(), la.c_in, la.c_out) for la in layers) + UNSEEN_MS
    return {"fingerprint": {"cpu": "planted"}, "times_ms": times}


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    dense = conv_layers(Small(), 32, 32)
    manifest = write_files(
        dense, tmp_path_factory.mktemp("files"), step=8, min_fraction=0.25, size=[32, 32], source="Small"
    )
    return LatencyTable.from_timings(manifest, planted_timings(manifest)), dense


@pytest.mark.parametrize("widths", [(16, 24), (8, 16), (12, 20), (4, 8)])  # grid, grid, between, below
def test_table_predicts_a_planted_cost_exactly(small_table, widths):
    table, _ = small_table
    layers = conv_layers(Small(*widths), 32, 32)
    expected = sum(planted_cost(layer.shape.key(), layer.c_in, layer.c_out) for layer in layers)
    prediction = table.predict(layers, residual_ms=1.5)
    assert prediction.table_ms == pytest.approx(expected, rel=1e-9)
    assert prediction.total_ms == pytest.approx(expected + 1.5, rel=1e-9)
    on_grid = all(w % 8 == 0 for w in widths)
    assert (prediction.off_grid == 0) == on_grid


def test_check_reports_zero_error_when_the_residual_is_what_the_table_misses(small_table):
    table, dense = small_table
    unseen = 3.0  # upsampling, additions...: the same in every model

    def measured(layers):
        return sum(planted_cost(layer.shape.key(), layer.c_in, layer.c_out) for layer in layers) + unseen

    models = {f"{a}-{b}": conv_layers(Small(a, b), 32, 32) for a, b in [(8, 16), (12, 20)]}
    report = check(table, dense, measured(dense), {name: (layers, measured(layers)) for name, layers in models.items()})
    assert residual_ms(table, dense, measured(dense)) == pytest.approx(unseen)
    assert all(abs(row["relative_error"]) < 1e-9 for row in report.values())
    wrong = check(table, dense, measured(dense) + 2, {"8-16": (models["8-16"], measured(models["8-16"]))})
    assert wrong["8-16"]["relative_error"] == pytest.approx(2 / measured(models["8-16"]))


@pytest.fixture(scope="module")
def folder_with_model(tmp_path_factory):
    """Small's files written with the whole model, and its manifest."""
    folder = tmp_path_factory.mktemp("with_model")
    torch.manual_seed(0)
    model = Small()
    manifest = write_files(conv_layers(model, 32, 48), folder, 8, 0.25, [32, 48], "Small", model=model)
    return folder, manifest


def test_files_hold_the_whole_model_static_at_the_table_size(folder_with_model):
    folder, manifest = folder_with_model
    assert manifest["files"][MODEL] == {"kind": "model"}
    graph = onnx.load(str(folder / MODEL)).graph
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 48]


def test_residual_is_the_measured_model_less_the_table_sum_of_its_layers(folder_with_model):
    _, manifest = folder_with_model
    timings = planted_timings(manifest)
    table = LatencyTable.from_timings(manifest, timings)
    assert table.residual_ms() == pytest.approx(UNSEEN_MS, rel=1e-9)
    assert table.size == (32, 48) and len(table.layers) == 4
    timings["times_ms"][MODEL] += 0.5  # a slower whole model: all of it is residual
    assert LatencyTable.from_timings(manifest, timings).residual_ms() == pytest.approx(UNSEEN_MS + 0.5, rel=1e-9)
    without = {**manifest, "files": {n: s for n, s in manifest["files"].items() if s["kind"] != "model"}}
    with pytest.raises(PipelineError, match=f"the timings hold no {MODEL}"):
        LatencyTable.from_timings(without, planted_timings(without)).residual_ms()


def test_from_folder_reads_manifest_and_timings_or_names_the_missing_file(folder_with_model, tmp_path):
    folder, manifest = folder_with_model
    with pytest.raises(PipelineError, match=r"timings\.json: missing"):
        LatencyTable.from_folder(folder)
    (folder / "timings.json").write_text(json.dumps(planted_timings(manifest)))
    try:
        table = LatencyTable.from_folder(folder)
    finally:
        (folder / "timings.json").unlink()
    assert table.residual_ms() == pytest.approx(UNSEEN_MS, rel=1e-9) and table.fingerprint == {"cpu": "planted"}
    prediction = table.predict(conv_layers(Small(8, 16), 32, 48), table.residual_ms())
    assert prediction.residual_ms == pytest.approx(UNSEEN_MS) and prediction.off_grid == 0
    with pytest.raises(PipelineError, match=r"manifest\.json: missing"):
        LatencyTable.from_folder(tmp_path)


@pytest.fixture(scope="module")
def tiny_unet(params):
    torch.manual_seed(0)
    return create_model(ModelCfg.model_validate(params["model"]))


def test_layers_of_the_tiny_unet_are_its_convolutions(tiny_unet):
    model = tiny_unet
    layers = {layer.name: layer for layer in conv_layers(model, 64, 96)}
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(layers) == set(convs)
    assert all((layers[n].c_in, layers[n].c_out) == (m.in_channels, m.out_channels) for n, m in convs.items())
    first, head = layers["encoder.conv1"], layers["segmentation_head.0"]
    assert (first.shape.height, first.shape.width, first.shape.stride) == (64, 96, (2, 2))
    assert first.shape.bn and first.shape.act == "Relu" and first.fixed_in and not first.fixed_out
    assert not head.shape.bn and head.shape.act is None and head.shape.bias and head.fixed_out
    assert (head.shape.height, head.shape.width) == (64, 96)
    down = layers["encoder.layer2.0.downsample.0"]  # its output goes into the residual addition
    assert down.shape.bn and down.shape.act is None and (down.shape.height, down.shape.width) == (16, 24)
    assert sum(not (layer.fixed_in or layer.fixed_out) for layer in layers.values()) == len(layers) - 2


def test_layer_files_hold_the_layer_between_its_stand_in_neighbours(tmp_path):
    import onnxruntime as ort

    layer = conv_layers(Small(), 32, 32)[1]  # 16 -> 24, stride 2, BN, ReLU
    path = tmp_path / "layer.onnx"
    onnx.save(layer_model(layer.shape, 16, 24), str(path))
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.ones((1, 16, 32, 32), np.float32)})[0]
    assert out.shape == (1, 24, 16, 16)
    ops = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("Conv") + ops.count("FusedConv") == 3  # BN folded, ReLU fused, weights constant-folded
    assert not {"BatchNormalization", "Relu", "ConstantOfShape"} & set(ops)
    assert path.stat().st_size < 2000


def test_manifest_lists_a_full_grid_per_shape(tmp_path):
    layers = conv_layers(Small(), 32, 32)
    manifest = json.loads(json.dumps(write_files(layers, tmp_path, 8, 0.25, [32, 32], "Small")))
    assert json.loads((tmp_path / MANIFEST).read_text()) == manifest
    points = {}
    for spec in manifest["files"].values():
        if spec["kind"] == "layer":
            points.setdefault(spec["key"], set()).add((spec["c_in"], spec["c_out"]))
    by_name = {layer.name: layer.shape.key() for layer in layers}
    assert points[by_name["stem.0"]] == {(3, 8), (3, 16)}
    assert points[by_name["down.0"]] == {(i, o) for i in (8, 16) for o in (8, 16, 24)}
    assert points[by_name["dw.0"]] == {(8, 8), (16, 16), (24, 24)}
    assert points[by_name["head"]] == {(8, 1), (16, 1), (24, 1)}
    assert all((tmp_path / name).exists() for name in manifest["files"])


def test_device_script_times_files_and_writes_the_fingerprint(tmp_path):
    layer = conv_layers(Small(8, 8), 16, 16)[1]
    onnx.save(layer_model(layer.shape, 8, 8), str(tmp_path / "a.onnx"))
    onnx.save(context_model(8, 16, 16), str(tmp_path / "b.onnx"))
    out = tmp_path / "timings.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "time_layers.py"),
            str(tmp_path),
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert set(record["times_ms"]) == {"a.onnx", "b.onnx"} and all(t > 0 for t in record["times_ms"].values())
    fingerprint = record["fingerprint"]
    assert {"cpu", "avx512_vnni", "threads", "onnxruntime", "cores"} <= set(fingerprint)
    assert fingerprint["threads"] == 1 and fingerprint["cpu"]


@pytest.mark.parametrize("script", ["time_layers", "onnx_latency"])
def test_device_scripts_sessions_do_not_spin(script, tmp_path):
    """Interleaved, an idle session's spinning threads take the cores from the running one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script, ROOT / "deploy" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    onnx.save(context_model(8, 16, 16), str(tmp_path / "c.onnx"))
    options = module.session(tmp_path / "c.onnx" if script == "time_layers" else str(tmp_path / "c.onnx"), 2)
    assert options.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_device_script_needs_only_numpy_and_onnxruntime():
    tree = ast.parse((ROOT / "deploy" / "time_layers.py").read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) == {"numpy", "onnxruntime"}


def test_layers_command_needs_an_output_folder_unless_listing(capsys):
    from pipeline.latency.layers import main

    with pytest.raises(SystemExit) as exit_help:
        main(["--help"])
    assert exit_help.value.code == 0 and "--step" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_error:
        main(["--params", "params.yaml"])
    assert exit_error.value.code == 2 and "--out is required" in capsys.readouterr().err


def test_commands_write_the_files_and_predict_a_model_folder(tiny_unet, params, tmp_path, capsys):
    from pipeline.artifact import save_model
    from pipeline.latency import layers, table

    save_model(tiny_unet, tmp_path / "model", {"model": params["model"], "num_classes": 2, "threshold": 0.5})
    files = tmp_path / "files"
    layers.main(
        [
            "--model",
            str(tmp_path / "model"),
            "--size",
            "64",
            "64",
            "--step",
            "128",
            "--min-fraction",
            "0.5",
            "--out",
            str(files),
        ]
    )
    manifest = json.loads((files / MANIFEST).read_text())
    assert len(manifest["layers"]) == 31 and manifest["size"] == [64, 64]
    timings = planted_timings(manifest)
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    dense = [layers.ConvLayer.from_dict(layer) for layer in manifest["layers"]]
    cost = sum(planted_cost(layer.shape.key(), layer.c_in, layer.c_out) for layer in dense)
    capsys.readouterr()
    table.main(
        [
            "--files",
            str(files),
            "--timings",
            str(tmp_path / "timings.json"),
            "--dense-ms",
            str(cost + 4),
            "--model",
            str(tmp_path / "model"),
            "--measured",
            str(cost + 4),
        ]
    )
    assert "error +0.0%, 0 layers off the grid" in capsys.readouterr().out
    assert manifest["files"][MODEL] == {"kind": "model"}
    table.main(  # no --dense-ms: the residual comes from the timed model.onnx (planted: UNSEEN_MS)
        ["--files", str(files), "--timings", str(tmp_path / "timings.json"), "--model", str(tmp_path / "model"),
         "--measured", str(cost + UNSEEN_MS)]
    )
    assert "error +0.0%, 0 layers off the grid" in capsys.readouterr().out


def test_bench_check_passes_with_five_models_within_the_tolerance_and_says_if_all_were():
    from bench.latency_table import verdict

    def row(error: float, off_grid: int) -> dict:
        return {"relative_error": error, "off_grid": off_grid, "within_tolerance": abs(error) <= 0.1}

    rows = {f"m{i}": row(0.05 * (-1) ** i, i % 2 * 3) for i in range(5)}
    result = verdict(rows, 0.1)
    assert result["passed"]
    assert result["groups"]["on_grid"]["models"] == 3 and result["groups"]["off_grid"]["models"] == 2
    assert result["groups"]["off_grid"]["max_abs_error"] == pytest.approx(0.05)
    assert result["all_within"] and result["within"] == 5
    missed = verdict({**rows, "slow": row(-0.12, 0)}, 0.1)  # the check: five within, one miss shown
    assert missed["passed"] and not missed["all_within"] and missed["groups"]["on_grid"]["within"] == 3
    assert not verdict({**dict(list(rows.items())[:4]), "slow": row(-0.12, 0)}, 0.1)["passed"]  # only 4 within
