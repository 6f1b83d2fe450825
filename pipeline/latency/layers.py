"""The convolution layers of a model at the evaluation size, as the latency table keys them.

A layer is keyed by its shape (kernel, stride, padding, dilation, input H x W, depthwise or
not) and by what ONNX Runtime fuses into it (a BatchNorm folded into its weights, a
following activation); its widths c_in, c_out are the table's grid axes. A width is fixed
(not gridded) when pruning cannot change it: the image's channels, the logits' channels,
and both widths of a grouped, not depthwise, convolution.

    python -m pipeline.latency.layers --model checkpoints/final/hqs_l0-0.5 --out latency/files
    python -m pipeline.latency.layers --params params.yaml --size 384 544 --out latency/files

writes one small ONNX file per layer shape and width pair (pipeline/latency/files.py), the
whole model as model.onnx (its time gives the residual) and a manifest.json; copy the
folder and deploy/time_layers.py to the device and time them there.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# PyTorch activation -> the ONNX op ONNX Runtime fuses into a preceding Conv (FusedConv)
FUSED_ACTIVATIONS = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}


@dataclass(frozen=True)
class ConvShape:
    """Everything about a convolution that the table keys, except its widths."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    height: int  # input height and width at the evaluation size
    width: int
    depthwise: bool
    groups: int  # 1, the width of a depthwise conv, or a fixed group count
    bias: bool
    bn: bool  # a BatchNorm2d follows: ONNX Runtime folds it into the weights
    act: str | None  # ONNX op of a following fusable activation

    def key(self) -> str:
        """A short unique name, used in file names and as the table's key."""
        parts = [
            f"k{self.kernel[0]}x{self.kernel[1]}",
            f"s{self.stride[0]}x{self.stride[1]}",
            f"p{self.padding[0]}x{self.padding[1]}",
            f"d{self.dilation[0]}x{self.dilation[1]}",
            f"h{self.height}w{self.width}",
            "dw" if self.depthwise else f"g{self.groups}",
            "b" if self.bias else "nb",
            "bn" if self.bn else "nobn",
            (self.act or "none").lower(),
        ]
        return "_".join(parts)

    def output_size(self) -> tuple[int, int]:
        """Output height and width (PyTorch's and ONNX's formula for explicit padding)."""
        return tuple(
            (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
            for size, pad, dil, k, stride in zip(
                (self.height, self.width), self.padding, self.dilation, self.kernel, self.stride, strict=True
            )
        )


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a model: its module name, shape and current widths."""

    name: str
    shape: ConvShape
    c_in: int
    c_out: int
    fixed_in: bool  # pruning cannot change c_in (the image's channels, grouped convs)
    fixed_out: bool  # ... or c_out (the logits, grouped convs)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.shape.key()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvLayer:
        shape = {k: tuple(v) if isinstance(v, list) else v for k, v in data["shape"].items()}
        fields = {k: data[k] for k in ("name", "c_in", "c_out", "fixed_in", "fixed_out")}
        return cls(shape=ConvShape(**shape), **fields)


def _trace(
    model: nn.Module, x: torch.Tensor
) -> tuple[list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """(name, module, input, output) of every leaf module in execution order, and the output.

    The tensors are kept alive until the end, so equal data pointers mean the same tensor
    (or an in-place result of it), never reused memory."""
    calls = []
    hooks = [
        module.register_forward_hook(lambda mod, args, out, name=name: calls.append((name, mod, args[0], out)))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    try:
        with torch.inference_mode():
            output = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls, output


def _consumer(calls: list, start: int, tensor: torch.Tensor) -> tuple[int, nn.Module | None]:
    """(index, module) of the first call after `start` that reads `tensor` (Identity modules
    skipped), or (-1, None)."""
    for index in range(start + 1, len(calls)):
        _, module, inp, _ = calls[index]
        if (
            not isinstance(module, nn.Identity)
            and isinstance(inp, torch.Tensor)
            and inp.data_ptr() == tensor.data_ptr()
        ):
            return index, module
    return -1, None


def conv_layers(model: nn.Module, height: int, width: int) -> list[ConvLayer]:
    """The Conv2d layers of `model` run on a 1x3xHxW input, in execution order."""
    was_training = model.training
    model = model.eval().cpu()
    x = torch.zeros(1, 3, height, width)
    calls, output = _trace(model, x)
    model.train(was_training)
    layers = []
    for i, (name, conv, inp, out) in enumerate(calls):
        if not isinstance(conv, nn.Conv2d):
            continue
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise ValueError(f"{name}: only explicit zero padding is supported, got {conv.padding!r}")
        index, after = _consumer(calls, i, out)
        bn = isinstance(after, nn.BatchNorm2d)
        if bn:  # the activation, if any, reads the BatchNorm's output
            index, after = _consumer(calls, index, calls[index][3])
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        grouped = conv.groups > 1 and not depthwise
        shape = ConvShape(
            kernel=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            height=inp.shape[2],
            width=inp.shape[3],
            depthwise=depthwise,
            groups=conv.groups,
            bias=conv.bias is not None,
            bn=bn,
            act=FUSED_ACTIVATIONS.get(type(after)),
        )
        layers.append(
            ConvLayer(
                name,
                shape,
                conv.in_channels,
                conv.out_channels,
                fixed_in=grouped or inp.data_ptr() == x.data_ptr(),
                fixed_out=grouped or out.data_ptr() == output.data_ptr(),
            )
        )
    return layers


def load_layers(
    model_folder: Path | None, params: Path | None, height: int, width: int
) -> tuple[list[ConvLayer], str, nn.Module]:
    """The layers of a model folder (pruned or not), or of the dense model params.yaml's
    `model` section builds; a description of the source; and the model."""
    if model_folder is not None:
        from pipeline.artifact import load_model

        model, _ = load_model(model_folder)
        return conv_layers(model, height, width), str(model_folder), model
    from pipeline.models import create_model
    from pipeline.params import load_sections

    (cfg,) = load_sections(params, "model")
    model = create_model(cfg)
    return conv_layers(model, height, width), f"{params}: model {cfg.arch}-{cfg.encoder} (dense)", model


def main(argv: list[str] | None = None) -> None:
    """Enumerate the layers and write their ONNX files and manifest."""
    from pipeline.cli import run
    from pipeline.latency.files import write_files

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="model folder (model.json + model.pt), pruned or not")
    source.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file whose `model` section gives the dense model (default: params.yaml)",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[384, 544],
        metavar=("H", "W"),
        help="evaluation size, multiples of 32 (default: 384 544)",
    )
    p.add_argument(
        "--step", type=int, default=8, help="grid step of the widths: prune.round_to, 8 if unset (default: 8)"
    )
    p.add_argument(
        "--min-fraction",
        type=float,
        default=0.25,
        help="narrowest width gridded, as a share of the dense width: 1 - prune.max_layer_pruning (default: 0.25)",
    )
    p.add_argument("--out", type=Path, help="folder for the ONNX files and manifest.json")
    p.add_argument("--list", action="store_true", help="only print the layers, write nothing")
    args = p.parse_args(argv)
    if args.out is None and not args.list:
        p.error("--out is required (or --list to only print the layers)")

    def body() -> None:
        layers, source_name, model = load_layers(args.model, args.params, *args.size)
        if args.list:
            for layer in layers:
                print(f"{layer.name}: {layer.c_in} -> {layer.c_out}  {layer.shape.key()}")
            return
        manifest = write_files(layers, args.out, args.step, args.min_fraction, args.size, source_name, model)
        print(
            f"{args.out}: {len(manifest['files'])} ONNX files (model.onnx among them) for {len(layers)} convolutions "
            f"({len({layer.shape.key() for layer in layers})} shapes) at {args.size[0]}x{args.size[1]}"
        )

    run(body)


if __name__ == "__main__":
    main()
