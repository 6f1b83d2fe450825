"""Stage `report`: one table of every model the pipeline produced, accuracy against cost.

The full report (plots, latency protocol, export) comes with the report issue; this
version collects what the stages recorded into reports/report.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.stages._cli import parser, run

STAGES = ("baseline", "augment", "loss", "prune", "finetune")
COLUMNS = ("test/iou", "test/miou", "test/f1", "val/iou", "gmacs", "mparams", "latency_ms")


def table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table of `rows` over COLUMNS (blank where a figure was not measured)."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float | int) else "" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Read the stage reports and write reports/report.md."""
    p = parser(__doc__)
    p.add_argument("--reports", type=Path, default=Path("reports"))
    p.add_argument("--out", type=Path, default=Path("reports/report.md"))
    args = p.parse_args(argv)

    def body() -> None:
        records = {stage: json.loads((args.reports / f"{stage}.json").read_text()) for stage in STAGES}
        baseline = records["baseline"]
        rows = {f"baseline: {name}": row for name, row in baseline["candidates"].items()}
        dense = {}
        notes = []
        for stage in STAGES[1:]:
            record = records[stage]
            if "winner" in record:  # a study: its chosen option
                dense = record["candidates"][record["winner"]]
                rows[f"{stage}: {record['winner']}"] = dense
            else:
                rows[stage] = {**dense, **record["metrics"]}
                notes.append(f"- `{stage}` is not built yet: it passed its input model through unchanged.")
        text = "\n\n".join([
            "# Power-line segmentation: accuracy vs cost",
            f"Baseline rule: {baseline['rule']}. Chosen: **{baseline['winner']}**.",
            table(rows),
            "IoU/F1: power-line class, pixels summed over the split, strict (no distance tolerance); "
            "test figures at the threshold tuned on val. GMACs at "
            f"{baseline['cost_size']}x{baseline['cost_size']}; latency: batch 1, CPU, median.",
            "\n".join(notes),
        ])
        args.out.write_text(text + "\n")
        print(text)

    run(body)


if __name__ == "__main__":
    main()
