"""The device latency table: entries per layer shape and width pair, and what they predict.

Built from the workstation's manifest (pipeline/latency/files.py) and the device's
timings (deploy/time_layers.py). An entry is a layer file's median time less half of
each of its two context files' (files.py says why). A model's predicted latency is the
sum of its convolutions' entries plus a per-model residual: the measured latency of the
dense model minus the table's sum for it, i.e. everything the table cannot see
(upsampling, concatenation, residual additions, the graph's own input and output). The
dense model is timed on the device in the same run as the layers (the files folder's
model.onnx), so `LatencyTable.from_folder(folder).residual_ms()` needs nothing else.

Between grid widths an entry is interpolated bilinearly in (c_in, c_out) from the four
surrounding grid points (linearly beyond the grid's ends). That is exact for any cost of
the form a + b c_in + c c_out + d c_in c_out, which is what a convolution's arithmetic
(~ c_in c_out) and memory traffic (~ c_in, ~ c_out) are; it is not exact for the steps in
cost a layout change causes, and it cannot see that an off-grid width (e.g. 37 with grid
step 8) makes ONNX Runtime fall back to its plain kernels. Such layers are counted in
`Prediction.off_grid`: prune with `round_to` equal to the grid step to stay on the grid.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.latency.files import MANIFEST, MODEL
from pipeline.latency.layers import ConvLayer

TIMINGS = "timings.json"  # deploy/time_layers.py's default output in the files folder


@dataclass(frozen=True)
class Prediction:
    """A whole-model latency prediction and its parts, in ms."""

    total_ms: float
    table_ms: float  # sum of the layers' entries
    residual_ms: float
    off_grid: int  # layers whose widths were interpolated (or extrapolated), not looked up


def _bracket(axis: list[int], value: int) -> tuple[int, int, float]:
    """Indices (i, j) of the grid points around `value` and its weight t towards j (t
    outside [0, 1] extrapolates from the nearest two points)."""
    if len(axis) == 1:
        return 0, 0, 0.0
    j = min(max(bisect.bisect_left(axis, value), 1), len(axis) - 1)
    i = j - 1
    return i, j, (value - axis[i]) / (axis[j] - axis[i])


class LatencyTable:
    """Entries (ms) per shape key and (c_in, c_out), with the device fingerprint; from a
    manifest also its model's layers, evaluation size (H, W) and measured whole-model ms."""

    def __init__(
        self,
        entries: dict[str, dict[tuple[int, int], float]],
        fingerprint: dict[str, Any],
        layers: list[ConvLayer] | None = None,
        model_ms: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.entries, self.fingerprint = entries, fingerprint
        self.layers, self.model_ms, self.size = layers or [], model_ms, size
        self.axes = {
            key: (sorted({ci for ci, _ in points}), sorted({co for _, co in points})) for key, points in entries.items()
        }

    @classmethod
    def from_timings(cls, manifest: dict[str, Any], timings: dict[str, Any]) -> LatencyTable:
        """Entries from a manifest and a device timings record (deploy/time_layers.py)."""
        times = timings["times_ms"]
        missing = sorted(set(manifest["files"]) - set(times))
        if missing:
            raise ValueError(f"{len(missing)} files of the manifest have no timing, e.g. {missing[0]}")
        entries: dict[str, dict[tuple[int, int], float]] = {}
        for name, spec in manifest["files"].items():
            if spec["kind"] == "layer":
                context = sum(times[c] for c in spec["contexts"]) / 2
                entries.setdefault(spec["key"], {})[(spec["c_in"], spec["c_out"])] = times[name] - context
        model_ms = next((times[n] for n, spec in manifest["files"].items() if spec["kind"] == "model"), None)
        layers = [ConvLayer.from_dict(layer) for layer in manifest.get("layers", [])]
        size = tuple(manifest["size"]) if "size" in manifest else None
        return cls(entries, timings.get("fingerprint", {}), layers, model_ms, size)

    @classmethod
    def load(cls, folder: Path, timings: Path) -> LatencyTable:
        """The table of a files folder (its manifest.json) and a timings JSON."""
        for path in (folder / MANIFEST, timings):
            if not path.exists():
                raise PipelineError(
                    f"{path}: missing (pipeline.latency.layers writes the manifest, deploy/time_layers.py the timings)"
                )
        return cls.from_timings(json.loads((folder / MANIFEST).read_text()), json.loads(timings.read_text()))

    @classmethod
    def from_folder(cls, folder: Path) -> LatencyTable:
        """The table of a files folder holding both its manifest.json and the device's timings.json."""
        return cls.load(Path(folder), Path(folder) / TIMINGS)

    def residual_ms(self) -> float:
        """What the table cannot see: the measured whole model (model.onnx, timed with the
        layers) minus the table's sum over the manifest's layers."""
        if self.model_ms is None:
            raise PipelineError(
                f"the timings hold no {MODEL}: write the files with pipeline.latency.layers "
                "(it exports the model) and time them again, or give the dense model's ms"
            )
        return self.model_ms - self.predict(self.layers).table_ms

    def layer_ms(self, layer: ConvLayer) -> tuple[float, bool]:
        """(entry in ms, whether it was a grid point) of one layer at its current widths."""
        key = layer.shape.key()
        if key not in self.entries:
            raise KeyError(f"{layer.name}: shape {key} is not in the table (another model or evaluation size?)")
        points = self.entries[key]
        if (layer.c_in, layer.c_out) in points:
            return points[(layer.c_in, layer.c_out)], True
        if layer.shape.depthwise:  # a diagonal grid: interpolate along it
            axis = self.axes[key][0]
            i, j, t = _bracket(axis, layer.c_in)
            return (1 - t) * points[(axis[i], axis[i])] + t * points[(axis[j], axis[j])], False
        ins, outs = self.axes[key]
        (i0, i1, ti), (o0, o1, to) = _bracket(ins, layer.c_in), _bracket(outs, layer.c_out)
        value = (
            (1 - ti) * (1 - to) * points[(ins[i0], outs[o0])]
            + (1 - ti) * to * points[(ins[i0], outs[o1])]
            + ti * (1 - to) * points[(ins[i1], outs[o0])]
            + ti * to * points[(ins[i1], outs[o1])]
        )
        return value, False

    def predict(self, layers: list[ConvLayer], residual_ms: float = 0.0) -> Prediction:
        """Predicted latency of a model with these layers (pipeline.latency.layers.conv_layers)."""
        looked_up = [self.layer_ms(layer) for layer in layers]
        table_ms = sum(ms for ms, _ in looked_up)
        return Prediction(table_ms + residual_ms, table_ms, residual_ms, sum(not hit for _, hit in looked_up))


def residual_ms(table: LatencyTable, dense_layers: list[ConvLayer], measured_ms: float) -> float:
    """What the table cannot see: the dense model's measured latency minus its table sum."""
    return measured_ms - table.predict(dense_layers).table_ms


def check(
    table: LatencyTable,
    dense_layers: list[ConvLayer],
    dense_measured_ms: float,
    models: dict[str, tuple[list[ConvLayer], float]],
) -> dict[str, dict[str, float]]:
    """Prediction against measurement for each model name -> (layers, measured ms), the
    residual taken from the dense model: predicted and measured ms, relative error
    (predicted / measured - 1) and the number of off-grid layers."""
    residual = residual_ms(table, dense_layers, dense_measured_ms)
    report = {}
    for name, (layers, measured) in models.items():
        prediction = table.predict(layers, residual)
        report[name] = {
            "predicted_ms": prediction.total_ms,
            "measured_ms": measured,
            "relative_error": prediction.total_ms / measured - 1,
            "off_grid": prediction.off_grid,
        }
    return report


def main(argv: list[str] | None = None) -> None:
    """Predict model folders' latency from a table; with --measured, check the predictions."""
    import argparse

    from pipeline.cli import run

    p = argparse.ArgumentParser(
        description="Predicted latency of model folders from the device table, the residual taken from the model "
        "the files were written for (its manifest layers) and its measured latency: its model.onnx timed with the "
        "layers, or --dense-ms.\n\n"
        "    python -m pipeline.latency.table --files latency/files \\\n"
        "        --model checkpoints/final/hqs_l0-0.5 --measured 77.2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--files", type=Path, required=True, help="folder written by pipeline.latency.layers")
    p.add_argument("--timings", type=Path, help="JSON written by deploy/time_layers.py (default: <files>/timings.json)")
    p.add_argument(
        "--dense-ms", type=float, help="measured latency of the files' model (ms; default: its model.onnx's timing)"
    )
    p.add_argument("--model", type=Path, nargs="+", required=True, help="model folders to predict")
    p.add_argument("--measured", type=float, nargs="+", help="their measured latencies (ms), in the same order")
    args = p.parse_args(argv)
    if args.measured is not None and len(args.measured) != len(args.model):
        p.error(f"--measured gives {len(args.measured)} values for {len(args.model)} models")

    def body() -> None:
        from pipeline.artifact import load_model
        from pipeline.latency.layers import conv_layers

        table = LatencyTable.load(args.files, args.timings or args.files / TIMINGS)
        if args.dense_ms is None:
            table.residual_ms()  # one line if the timings hold no model.onnx
        dense_ms = table.model_ms if args.dense_ms is None else args.dense_ms
        measured = args.measured or [float("nan")] * len(args.model)
        models = {
            str(path): (conv_layers(load_model(path)[0], *table.size), ms)
            for path, ms in zip(args.model, measured, strict=True)
        }
        for name, row in check(table, table.layers, dense_ms, models).items():
            print(
                f"{name}: predicted {row['predicted_ms']:.1f} ms, measured {row['measured_ms']:.1f} ms, "
                f"error {row['relative_error']:+.1%}, {row['off_grid']} layers off the grid"
            )

    run(body)


if __name__ == "__main__":
    main()
