"""Apply a named preset (configs/*.yaml) to params.yaml, so `dvc repro` and
`dvc exp show` see the change like any other parameter edit.

    python -m pipeline.preset configs/pldu.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.params import load_params, validate_params


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`; lists and scalars are replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_preset(preset: Path, params: Path) -> dict[str, Any]:
    """Merge `preset` into `params`, validate the result, and only then write it."""
    merged = merge(load_params(params), load_params(preset))
    validate_params(merged, f"{params} + {preset}")
    tmp = params.with_name(f".{params.name}.tmp")
    tmp.write_text(f"# preset {preset} applied\n" + yaml.safe_dump(merged, sort_keys=False))
    tmp.replace(params)
    return merged


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m pipeline.preset PRESET [--params params.yaml]."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", type=Path, help="a YAML file of overrides, e.g. configs/pldu.yaml")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = p.parse_args(argv)
    try:
        apply_preset(args.preset, args.params)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.params}: applied {args.preset}")


if __name__ == "__main__":
    main()
