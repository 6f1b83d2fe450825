"""Stage `export`: the model to ship as ONNX, checked against PyTorch.

dvc.yaml passes --model checkpoints/ship, the model folder the `pick` stage chose. The ONNX
file carries normalisation, classes, tuned threshold and opset as
metadata; ONNX Runtime must match PyTorch's logits on real test images.

With `quantize.enabled` it also writes the INT8 copy (--int8, in the --int8 folder DVC
tracks, which stays empty when INT8 is off or fails the val check: pipeline.int8) and its
record (--int8-report).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pipeline.artifact import load_model, write_json
from pipeline.data.datamodule import PreparedSplit, eval_transform, pad_collate
from pipeline.export import check_export, export_onnx
from pipeline.int8 import disabled_record, quantize_checked
from pipeline.params import load_sections
from pipeline.pick import refuse_export_model
from pipeline.stages._cli import add_paths, parser, run, wall_seconds


def check_inputs(data: Path, count: int) -> list[np.ndarray]:
    """The first `count` test images, normalised and padded as in evaluation (CHW float32)."""
    split = PreparedSplit(data, "test", eval_transform())
    return [pad_collate([split[i]])["image"][0].numpy() for i in range(min(count, len(split)))]


def main(argv: list[str] | None = None) -> None:
    """Export --model to --out (ONNX), check it on test images, write --report."""
    p = parser(__doc__)
    add_paths(p, model=("checkpoints/ship", "model folder to export (the pick stage's)"),
              data=("data/prepared", "prepared data set (test images for the check)"),
              out=("export/model.onnx", "ONNX file"), report=("reports/export.json", "record (JSON)"),
              int8=("export/int8/model.int8.onnx", "INT8 ONNX file, written only if it passes the val check"))
    p.add_argument("--int8-report", type=Path, default=Path("reports/int8.json"),
                   help="INT8 record (JSON) (default: reports/int8.json)")
    args = p.parse_args(argv)

    def body() -> None:
        refuse_export_model(args.params)
        cfg, quantize = load_sections(args.params, "export", "quantize")
        model, card = load_model(args.model)
        images = check_inputs(args.data, cfg.check_images)
        height, width = images[0].shape[1:]
        export_onnx(model, card, args.out, height, width, cfg.opset)
        diff = check_export(model, args.out, images, cfg.max_abs_diff)
        record = {"model": str(args.model), "onnx": str(args.out), "opset": cfg.opset, "check_images": len(images),
                  "max_abs_diff": diff, "bytes": args.out.stat().st_size, "threshold": card.threshold}
        print(f"{args.out}: opset {cfg.opset}, max |ONNX Runtime - PyTorch| = {diff:.2e} on {len(images)} test images")
        args.int8.parent.mkdir(parents=True, exist_ok=True)  # DVC's out: present, empty when nothing ships
        int8 = quantize_checked(args.out, args.int8, args.data, quantize) if quantize.enabled else disabled_record()
        if not quantize.enabled:
            args.int8.unlink(missing_ok=True)
        write_json(int8, args.int8_report)
        write_json({**record, "wall_seconds": wall_seconds()}, args.report)  # after INT8: the stage's whole time
        print(("" if int8["accepted"] or not quantize.enabled else "WARNING: ") + int8["outcome"],
              file=sys.stderr if quantize.enabled and not int8["accepted"] else sys.stdout)

    run(body)


if __name__ == "__main__":
    main()
