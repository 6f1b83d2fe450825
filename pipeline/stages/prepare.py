"""Stage `prepare`: build train/val/test splits from the configured source."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.prepare import prepare
from pipeline.params import load_sections
from pipeline.stages._cli import parser, run, wall_seconds


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, read `base` and `prepare` params, write the splits and metrics."""
    p = parser(__doc__)
    p.add_argument("--out", type=Path, default=Path("data/prepared"), help="output folder")
    p.add_argument("--metrics", type=Path, default=Path("reports/prepare.json"), help="metrics JSON")
    args = p.parse_args(argv)

    def body() -> None:
        base, cfg = load_sections(args.params, "base", "prepare")
        manifest = prepare(cfg, base, args.out)
        args.metrics.parent.mkdir(parents=True, exist_ok=True)
        summary = {k: manifest[k] for k in ("source", "seed", "splits")}
        summary["skipped"] = manifest["skipped"]["count"]
        summary["empty_masks"] = manifest["empty_masks"]["count"]  # no line/tower pixel: kept
        summary["wall_seconds"] = wall_seconds()
        args.metrics.write_text(json.dumps(summary, indent=1))
        for split, figures in manifest["splits"].items():
            print(f"{split}: {figures['images']} images, line pixels {figures['fractions']['line']:.3%}")

    run(body)


if __name__ == "__main__":
    main()
