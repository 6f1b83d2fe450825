"""Stage `report`: one table of every model the pipeline produced, accuracy against cost,
and the figures: IoU vs GMACs of every model, and the template magnitudes each template
method ended with (the saliency gap of HQS-L0 against L1 and L2 penalties).

The full report (HTML, latency protocol, export) comes with the report issue.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.plots import iou_vs_gmacs, template_histograms
from pipeline.stages._cli import parser, run

STUDIES = ("baseline", "augment", "loss")
COLUMNS = ("test/iou", "test/miou", "test/f1", "val/iou", "gmacs", "mparams", "latency_ms")


def table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table of `rows` over COLUMNS (blank where a figure was not measured)."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float | int) else "" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_folder(folder: Path) -> dict[str, dict[str, Any]]:
    """{run name: record} of every JSON in `folder` (one per method and MAC target)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def model_rows(reports: Path) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Every model as a table row, and the records they came from."""
    records = {stage: json.loads((reports / f"{stage}.json").read_text()) for stage in STUDIES}
    prunes, finals = read_folder(reports / "prune"), read_folder(reports / "finetune")
    rows = {f"baseline: {name}": row for name, row in records["baseline"]["candidates"].items()}
    for stage in STUDIES[1:]:
        record = records[stage]
        rows[f"{stage}: {record['winner']}"] = record["candidates"][record["winner"]]
    for name, record in prunes.items():
        rows[f"pruned {name}, after removal"] = {**record["after_removal"], **record["pruned"]}
        if name in finals:
            rows[f"pruned {name}, fine-tuned ({finals[name]['epochs']} epochs)"] = finals[name]["final"]
    return rows, {"studies": records, "prune": prunes, "finetune": finals}


def prune_notes(prunes: dict[str, dict[str, Any]]) -> list[str]:
    """One line per pruning run: target, achieved cut, saliency gap where there are templates."""
    notes = []
    for name, r in prunes.items():
        gap = r.get("templates", {}).get("saliency_gap")
        notes.append(f"- `{name}`: MACs cut {r['achieved_reduction']:.1%} (target {r['macs_reduction']:.0%}), "
                     f"{r['dense']['gmacs']:.3g} → {r['pruned']['gmacs']:.3g} GMACs"
                     + (f"; saliency gap (smallest kept / largest removed template) {gap:.3g}" if gap else ""))
    return notes


def main(argv: list[str] | None = None) -> None:
    """Read the stage reports; write reports/report.md and its figures."""
    p = parser(__doc__)
    p.add_argument("--reports", type=Path, default=Path("reports"))
    p.add_argument("--out", type=Path, default=Path("reports/report.md"))
    p.add_argument("--plots", type=Path, default=Path("reports/figures"))
    args = p.parse_args(argv)

    def body() -> None:
        rows, records = model_rows(args.reports)
        baseline = records["studies"]["baseline"]
        dense = records["studies"]["loss"]["winner"]
        iou_vs_gmacs(rows, f"loss: {dense}", args.plots / "iou_vs_gmacs.png", "every model (test IoU)", y="test/iou")
        figures = ["![IoU vs GMACs](figures/iou_vs_gmacs.png)"]
        with_templates = {n: r["templates"] for n, r in records["prune"].items() if "templates" in r}
        if with_templates:
            template_histograms(with_templates, args.plots / "template_magnitudes.png")
            figures.append("![template magnitudes](figures/template_magnitudes.png)")
        text = "\n\n".join([
            "# Power-line segmentation: accuracy vs cost",
            f"Baseline rule: {baseline['rule']}. Chosen: **{baseline['winner']}**; dense model: loss `{dense}`.",
            table(rows),
            "IoU/F1: power-line class, pixels summed over the split, strict (no distance tolerance); "
            "test figures at the threshold tuned on val. GMACs at "
            f"{baseline['cost_size']}x{baseline['cost_size']}; latency: batch 1, CPU, median of 10 runs "
            "measured when each model was made (noisy: compare within one run, see the report issue).",
            "## Pruning", "\n".join(prune_notes(records["prune"])) or "no pruning runs",
            *figures,
        ])
        args.out.write_text(text + "\n")
        print(text)

    run(body)


if __name__ == "__main__":
    main()
