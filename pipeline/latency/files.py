"""One small ONNX file per layer shape and width pair, and the context files they need.

Why a context: ONNX Runtime runs a convolution in its blocked NCHWc layout or in plain
NCHW depending on its widths, and inserts ReorderInput/ReorderOutput where a blocked
and a plain node meet. A convolution timed alone would always pay a reorder at the
file's plain input and output, which a fully blocked model never does, and would never
pay the one a plain neighbour causes. So each layer file is

    x (c_in, H, W) -> depthwise 1x1 (c_in) -> the layer [+ BatchNorm] [+ activation]
                   -> depthwise 1x1 (c_out) -> y

where the two depthwise 1x1 convolutions stand in for the producer and the consumer:
ONNX Runtime lays them out by their width alone, as it would the real neighbours at that
width. Their cost is taken off with context files `x (c) -> depthwise 1x1 (c) -> depthwise
1x1 (c) -> y`: layer entry = layer file - context(c_in) / 2 - context(c_out) / 2. What is
left is the convolution plus the reorders its widths cause at its own edges (and, to
within the difference of ReorderInput and ReorderOutput of one tensor, no boundary
reorders). The neighbour is assumed laid out by the shared width: when the neighbour's
other width alone makes it plain, the table misses (or double counts) that edge's reorder.

With a model given, the folder also holds it whole, `model.onnx` (static 1 x 3 x H x W
at the table's size, kind "model" in the manifest): timed on the device in the same run
as the layers, it gives the residual, what the table cannot see (pipeline/latency/table.py).

Weights are ConstantOfShape nodes, which ONNX Runtime folds into initializers before it
fuses and lays out the graph, so a file is a few hundred bytes whatever its widths.
fp32 convolution time does not depend on the weights' values.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.latency.layers import ConvLayer, ConvShape

OPSET = 17
INPUT, OUTPUT = "x", "y"
MANIFEST = "manifest.json"
MODEL = "model.onnx"  # the whole model the layers came from


def width_axis(dense: int, step: int, min_fraction: float, fixed: bool) -> list[int]:
    """Grid widths for one axis: the dense width and every multiple of `step` from
    `min_fraction` of it up; a fixed width is its only point."""
    if fixed:
        return [dense]
    low = min_fraction * dense
    values = {dense} | {w for w in range(step, dense, step) if w >= low}
    if len(values) == 1 and dense > 1:  # narrower than one step: keep a second point to interpolate on
        values.add(max(1, math.ceil(low)))
    return sorted(values)


def shape_axes(layers: list[ConvLayer], step: int, min_fraction: float) -> dict[str, tuple[list[int], list[int]]]:
    """Per shape key, the (c_in, c_out) axes: the union over its layers, so every key's
    grid is a full product (bilinear interpolation needs one). Depthwise: c_out = c_in."""
    axes: dict[str, tuple[set[int], set[int]]] = defaultdict(lambda: (set(), set()))
    for layer in layers:
        ins, outs = axes[layer.shape.key()]
        ins.update(width_axis(layer.c_in, step, min_fraction, layer.fixed_in))
        outs.update(width_axis(layer.c_out, step, min_fraction, layer.fixed_out))
    return {key: (sorted(ins), sorted(outs)) for key, (ins, outs) in axes.items()}


def grid_points(shape: ConvShape, ins: list[int], outs: list[int]) -> list[tuple[int, int]]:
    """The (c_in, c_out) pairs timed for a shape: the product of its axes (the diagonal for
    a depthwise shape)."""
    if shape.depthwise:
        return [(c, c) for c in sorted(set(ins) | set(outs))]
    return list(itertools.product(ins, outs))


def _constant(nodes: list, inits: list, name: str, shape: list[int], value: float) -> str:
    """A ConstantOfShape weight `name` (folded by ONNX Runtime into an initializer)."""
    from onnx import TensorProto, helper, numpy_helper

    inits.append(numpy_helper.from_array(np.asarray(shape, np.int64), f"{name}_shape"))
    nodes.append(
        helper.make_node(
            "ConstantOfShape",
            [f"{name}_shape"],
            [name],
            value=helper.make_tensor("value", TensorProto.FLOAT, [1], [value]),
        )
    )
    return name


def _depthwise(nodes: list, inits: list, source: str, target: str, channels: int) -> None:
    """A depthwise 1x1 convolution, the stand-in neighbour."""
    from onnx import helper

    weight = _constant(nodes, inits, f"{target}_w", [channels, 1, 1, 1], 1.0)
    nodes.append(helper.make_node("Conv", [source, weight], [target], group=channels))


def _model(nodes: list, inits: list, c_in: int, size_in: tuple[int, int], c_out: int, size_out: tuple[int, int]) -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "latency",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, c_in, *size_in])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, c_out, *size_out])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def layer_model(shape: ConvShape, c_in: int, c_out: int) -> Any:
    """depthwise 1x1 (c_in) -> the layer [+ BatchNorm] [+ activation] -> depthwise 1x1 (c_out)."""
    from onnx import helper, numpy_helper

    nodes, inits = [], []
    _depthwise(nodes, inits, INPUT, "producer", c_in)
    groups = c_in if shape.depthwise else shape.groups
    fan_in = c_in // groups * shape.kernel[0] * shape.kernel[1]
    inputs = ["producer", _constant(nodes, inits, "w", [c_out, c_in // groups, *shape.kernel], 1.0 / fan_in)]
    if shape.bias:
        inputs.append(_constant(nodes, inits, "b", [c_out], 0.0))
    nodes.append(
        helper.make_node(
            "Conv",
            inputs,
            ["conv"],
            kernel_shape=list(shape.kernel),
            strides=list(shape.stride),
            pads=list(shape.padding) * 2,
            dilations=list(shape.dilation),
            group=groups,
        )
    )
    last = "conv"
    if shape.bn:
        for name, value in (("scale", 1.0), ("shift", 0.0), ("mean", 0.0), ("var", 1.0)):
            inits.append(numpy_helper.from_array(np.full(c_out, value, np.float32), f"bn_{name}"))
        nodes.append(
            helper.make_node(
                "BatchNormalization", [last, *(f"bn_{n}" for n in ("scale", "shift", "mean", "var"))], ["bn"]
            )
        )
        last = "bn"
    if shape.act:
        nodes.append(helper.make_node(shape.act, [last], ["act"]))
        last = "act"
    _depthwise(nodes, inits, last, OUTPUT, c_out)
    return _model(nodes, inits, c_in, (shape.height, shape.width), c_out, shape.output_size())


def context_model(channels: int, height: int, width: int) -> Any:
    """depthwise 1x1 (c) -> depthwise 1x1 (c): the stand-in neighbours alone."""
    nodes, inits = [], []
    _depthwise(nodes, inits, INPUT, "producer", channels)
    _depthwise(nodes, inits, "producer", OUTPUT, channels)
    return _model(nodes, inits, channels, (height, width), channels, (height, width))


def layer_file(key: str, c_in: int, c_out: int) -> str:
    return f"L_{key}_i{c_in}_o{c_out}.onnx"


def context_file(channels: int, height: int, width: int) -> str:
    return f"C_c{channels}_h{height}w{width}.onnx"


def write_files(
    layers: list[ConvLayer],
    out: Path,
    step: int,
    min_fraction: float,
    size: list[int],
    source: str,
    model: Any = None,
) -> dict[str, Any]:
    """Write every layer file, context file and `out`/manifest.json; return the manifest.
    With `model` (the nn.Module the layers came from), also `out`/model.onnx, static at `size`."""
    import onnx

    if step < 1 or not 0 < min_fraction <= 1:
        raise ValueError(f"step must be >= 1 and min_fraction in (0, 1], got {step}, {min_fraction}")
    out.mkdir(parents=True, exist_ok=True)
    shapes = {layer.shape.key(): layer.shape for layer in layers}
    files: dict[str, dict[str, Any]] = {}
    if model is not None:
        from pipeline.export import export_onnx

        export_onnx(model, None, out / MODEL, *size, opset=OPSET, dynamic=False)
        files[MODEL] = {"kind": "model"}
    for key, (ins, outs) in shape_axes(layers, step, min_fraction).items():
        shape = shapes[key]
        for c_in, c_out in grid_points(shape, ins, outs):
            contexts = [context_file(c_in, shape.height, shape.width), context_file(c_out, *shape.output_size())]
            for name, (c, h, w) in zip(
                contexts, ((c_in, shape.height, shape.width), (c_out, *shape.output_size())), strict=True
            ):
                if name not in files:
                    onnx.save(context_model(c, h, w), str(out / name))
                    files[name] = {"kind": "context", "channels": c, "height": h, "width": w}
            name = layer_file(key, c_in, c_out)
            onnx.save(layer_model(shape, c_in, c_out), str(out / name))
            files[name] = {"kind": "layer", "key": key, "c_in": c_in, "c_out": c_out, "contexts": contexts}
    manifest = {
        "format": 1,
        "source": source,
        "size": list(size),
        "step": step,
        "min_fraction": min_fraction,
        "input": INPUT,
        "layers": [layer.to_dict() for layer in layers],
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
