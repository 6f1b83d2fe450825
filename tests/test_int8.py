"""The export stage's INT8 model: the val check and its fallback, the QDQ graph, logits close to
FP32 on the tiny model's test images, and predict (images and scenes) on the INT8 file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import rasterio
import torch
import yaml
from rasterio.transform import from_origin

from pipeline.artifact import save_model
from pipeline.config import ModelCfg
from pipeline.int8 import onnx_iou, quantize_checked
from pipeline.models import create_model
from pipeline.quantize import first_and_last_convs
from pipeline.sections import QuantizeCfg
from pipeline.stages.export import check_inputs
from pipeline.stages.export import main as export_main
from tests.test_quantize import _quantized_convs

CARD = {"num_classes": 2, "threshold": 0.5, "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}}


def _export(tmp: Path, params: dict, data: Path, quantize: dict) -> tuple[Path, dict]:
    """Run the export stage on the tiny model with `quantize` settings; (folder, INT8 record)."""
    (tmp / "params.yaml").write_text(yaml.safe_dump({"export": params["export"], "quantize": quantize}))
    export_main(["--params", str(tmp / "params.yaml"), "--model", str(tmp.parent / "model"), "--data", str(data),
                 "--out", str(tmp / "model.onnx"), "--report", str(tmp / "export.json"),
                 "--int8", str(tmp / "int8" / "model.int8.onnx"), "--int8-report", str(tmp / "int8.json")])
    return tmp, json.loads((tmp / "int8.json").read_text())


@pytest.fixture(scope="module")
def exported(tmp_path_factory, params, tiny_data):
    """The tiny model (seeded random weights) exported by the stage with a limit INT8 always meets."""
    torch.manual_seed(0)
    cfg = ModelCfg.model_validate(params["model"])
    root = tmp_path_factory.mktemp("int8stage")
    save_model(create_model(cfg).eval(), root / "model", {**CARD, "model": cfg.model_dump()})
    (root / "loose").mkdir()
    return _export(root / "loose", params, tiny_data, {"max_iou_drop": 1.0, "calibration_crops": 8,
                                                       "calibration_size": 64})


def test_stage_ships_an_int8_model_with_qdq_around_its_convs(exported):
    folder, record = exported
    int8 = folder / "int8" / "model.int8.onnx"
    assert record["accepted"] and record["kept_fp32"] == [] and record["int8"] == str(int8) and int8.exists()
    wrapped, convs = _quantized_convs(int8)
    assert len(convs) > 10 and len(wrapped) >= 0.9 * len(convs)
    assert record["format"]["format"] == "QDQ" and record["format"]["activations"] == "U8"
    assert set(record["val_iou"]) == {"fp32", "int8"} and set(record["test_iou"]) >= {"fp32", "int8"}


def test_stage_int8_logits_follow_fp32_on_test_images(exported, tiny_data):
    import onnxruntime as ort

    folder, _ = exported
    sessions = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for path in (folder / "model.onnx", folder / "int8" / "model.int8.onnx")]
    for image in check_inputs(tiny_data, 4):
        fp32, int8 = (s.run(None, {"image": image[None]})[0].ravel() for s in sessions)
        assert fp32.std() > 0 and not np.array_equal(fp32, int8)
        assert fp32 @ int8 / (np.linalg.norm(fp32) * np.linalg.norm(int8)) >= 0.99


def test_record_holds_the_measured_val_ious(exported, tiny_data):
    folder, record = exported
    assert record["val_iou"]["fp32"] == pytest.approx(onnx_iou(folder / "model.onnx", tiny_data, "val"))
    assert record["val_iou"]["int8"] == pytest.approx(onnx_iou(folder / "int8" / "model.int8.onnx", tiny_data, "val"))


def _kept(path: Path) -> list[str]:
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(meta["quantization"])["fp32_nodes"]


def _quantised(model: Path) -> bool:
    return "quantization" in {p.key for p in onnx.load(str(model), load_external_data=False).metadata_props}


def fake_scores(fp32_iou: float, all_int8: float, fallback: float):
    """A scorer: the FP32 file, the all-INT8 attempt and the attempt with FP32 nodes get these IoUs."""
    def score(model: Path, data: Path, split: str) -> float:
        if not _quantised(model):
            return fp32_iou
        return fallback if _kept(model) else all_int8
    return score


@pytest.mark.parametrize("limit, accepted, attempts", [(0.2, True, 1), (0.01, True, 2), (0.001, False, 2)])
def test_over_the_limit_falls_back_to_fp32_first_and_last_then_ships_nothing(exported, tiny_data, tmp_path,
                                                                           limit, accepted, attempts):
    """all-INT8 loses 0.1, the fallback 0.005: a tiny max_iou_drop forces the fallback, a tinier one
    the refusal, which removes any INT8 file there."""
    folder, _ = exported
    out = tmp_path / "model.int8.onnx"
    out.write_bytes(b"stale")
    cfg = QuantizeCfg(max_iou_drop=limit, calibration_crops=2, calibration_size=64)
    record = quantize_checked(folder / "model.onnx", out, tiny_data, cfg, fake_scores(0.5, 0.4, 0.495))
    assert len(record["attempts"]) == attempts and record["accepted"] is accepted and out.exists() is accepted
    expected = first_and_last_convs(folder / "model.onnx")
    if attempts == 2:
        assert record["attempts"][1]["kept_fp32"] == expected and len(expected) == 2
    if accepted:
        assert record["kept_fp32"] == _kept(out) == (expected if attempts == 2 else [])
    else:
        assert record["kept_fp32"] is None and record["int8"] is None and "no INT8 model shipped" in record["outcome"]
    assert record["val_iou"]["fp32"] == 0.5


def test_stage_with_a_zero_limit_falls_back_as_recorded(exported, params, tiny_data):
    """The real scorer with max_iou_drop 0: every attempt is judged by its own measured drop."""
    root = exported[0].parent
    (root / "strict").mkdir(exist_ok=True)
    folder, record = _export(root / "strict", params, tiny_data, {"max_iou_drop": 0.0, "calibration_crops": 4,
                                                                   "calibration_size": 64})
    for attempt in record["attempts"]:
        assert attempt["accepted"] is (attempt["val_drop"] <= 0)
    if not record["attempts"][0]["accepted"]:
        assert record["attempts"][1]["kept_fp32"] == first_and_last_convs(folder / "model.onnx")
    assert (folder / "int8" / "model.int8.onnx").exists() is record["accepted"]


def test_disabled_writes_an_empty_folder_and_says_so(exported, params, tiny_data):
    root = exported[0].parent
    (root / "off").mkdir(exist_ok=True)
    folder, record = _export(root / "off", params, tiny_data, {"enabled": False})
    assert record["enabled"] is False and not record["accepted"]
    assert (folder / "int8").is_dir() and not any((folder / "int8").iterdir())


def test_predict_runs_the_int8_model_on_photos_and_scenes(exported, tmp_path):
    from pipeline.predict import main as predict_main

    folder, _ = exported
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=160, height=130, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500_000.0, 6_000_000.0, 0.5, 0.5)) as dst:
        dst.write(rng.integers(0, 255, (3, 130, 160), dtype=np.uint8))
    for name in ("model.onnx", "int8/model.int8.onnx"):
        out = tmp_path / name.replace("/", "_")
        predict_main(["--model", str(folder / name), "--input", str(tmp_path / "photo.png"), "--out", str(out),
                      "--probability"])
        predict_main(["--model", str(folder / name), "--input", str(tmp_path / "scene.tif"), "--out", str(out),
                      "--probability", "--tile", "64", "--overlap", "32"])
    probs = {}
    for name in ("model.onnx", "int8_model.int8.onnx"):
        probs[name] = cv2.imread(str(tmp_path / name / "photo_prob.png"), cv2.IMREAD_UNCHANGED).astype(float)
        with rasterio.open(tmp_path / name / "scene_mask.tif") as src:
            assert src.crs.to_epsg() == 32633 and src.shape == (130, 160)
    assert probs["model.onnx"].shape == (70, 90) and probs["model.onnx"].std() > 0
    assert np.abs(probs["model.onnx"] - probs["int8_model.int8.onnx"]).mean() < 0.05 * 255


def test_unknown_fp32_nodes_are_refused_before_quantising(exported, tiny_data, tmp_path):
    from pipeline.errors import PipelineError

    folder, _ = exported
    cfg = QuantizeCfg(keep_fp32=["/no/such/Conv"], calibration_crops=1, calibration_size=64)
    with pytest.raises(PipelineError, match=r"quantize.keep_fp32: \['/no/such/Conv'\] are not nodes"):
        quantize_checked(folder / "model.onnx", tmp_path / "x.onnx", tiny_data, cfg)
    assert not (tmp_path / "x.onnx").exists()


def test_the_decision_reads_val_never_test(exported, tiny_data, tmp_path):
    """INT8 that holds on val but collapses on test ships (test is only reported); one that
    collapses on val but shines on test does not."""
    folder, _ = exported
    cfg = QuantizeCfg(max_iou_drop=0.01, calibration_crops=2, calibration_size=64)

    def split_scores(int8_val: float, int8_test: float):
        def score(model: Path, data: Path, split: str) -> float:
            if not _quantised(model):
                return 0.5
            return int8_val if split == "val" else int8_test
        return score

    good_on_val = quantize_checked(folder / "model.onnx", tmp_path / "a.onnx", tiny_data, cfg, split_scores(0.5, 0.0))
    assert good_on_val["accepted"] and (tmp_path / "a.onnx").exists()
    bad_on_val = quantize_checked(folder / "model.onnx", tmp_path / "b.onnx", tiny_data, cfg, split_scores(0.0, 0.9))
    assert not bad_on_val["accepted"] and not (tmp_path / "b.onnx").exists()
