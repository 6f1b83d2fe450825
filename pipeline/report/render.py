"""The report as Markdown, and as one self-contained HTML file (figures embedded)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from pipeline.console import duration
from pipeline.selection import SCORE

COLUMNS = (  # (header, row key, format)
    ("val IoU tuned", SCORE, ".3f"), ("test IoU", "test/iou", ".3f"), ("mIoU", "test/miou", ".3f"),
    ("F1", "test/f1", ".3f"), ("tol. F1", "test/tol_f1", ".3f"), ("Mparams", "mparams", ".2f"),
    ("GMACs", "gmacs", ".3f"),
    ("eager ms", "eager_ms", ".1f"), ("eager x dense", "eager_speedup", ".2f"),
    ("ORT ms", "onnx_ms", ".1f"), ("ORT x dense", "onnx_speedup", ".2f"),
    ("ONNX MB", "onnx_mb", ".1f"), ("peak MB ORT", "onnx_peak_mb", ".0f"),
)
STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
         "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
FAILED = "**failed**"  # what the rule means is said under the table (build.explain)


def model_table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table of every model over COLUMNS; '-' where a figure does not apply; the last
    column marks the rows of failed pruning runs (pipeline.selection.failed)."""
    lines = ["| model | " + " | ".join(h for h, _, _ in COLUMNS) + " | failed |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, row in rows.items():
        cells = [format(row[key], fmt) if isinstance(row.get(key), float | int) else "-" for _, key, fmt in COLUMNS]
        cells.append(FAILED if row.get("failed") else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_times(reports: Path, records: dict[str, Any]) -> list[tuple[str, float | None]]:
    """(stage, wall seconds) of every stage run behind the report, in pipeline order: prepare,
    the studies, prune and finetune per sweep run, export; None for a record without the
    figure (written before stages recorded it). `records`: pipeline.report.collect.gather's."""
    def seconds(record: dict[str, Any] | None) -> float | None:
        value = (record or {}).get("wall_seconds")
        return float(value) if isinstance(value, int | float) else None

    def optional(name: str) -> dict[str, Any] | None:  # prepare and export records may be absent
        try:
            return json.loads((reports / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    times = [("prepare", seconds(optional("prepare")))]
    times += [(stage, seconds(record)) for stage, record in records["studies"].items()]
    for run in records["prune"]:
        times.append((f"prune {run}", seconds(records["prune"][run])))
        if run in records["finetune"]:
            times.append((f"finetune {run}", seconds(records["finetune"][run])))
    export = optional("export")
    if export is not None:
        times.append(("export", seconds(export)))
    return times


def time_table(times: list[tuple[str, float | None]]) -> str:
    """Markdown table of stage wall times, with their total ("not recorded" where missing)."""
    lines = ["| stage | wall time |", "|---|---|"]
    lines += [f"| {stage} | {duration(s) if s is not None else 'not recorded'} |" for stage, s in times]
    known = [s for _, s in times if s is not None]
    total = duration(sum(known)) + ("" if len(known) == len(times) else " (recorded stages only)")
    lines.append(f"| **total** | {total} |")
    return "\n".join(lines)


def to_html(markdown: str, folder: Path, title: str) -> str:
    """Render Markdown to HTML and inline every local PNG it shows, so the file stands alone."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)

    def inline(match: re.Match[str]) -> str:
        data = base64.b64encode((folder / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^":]+\.png)"', inline, body)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def prune_notes(prunes: dict[str, dict[str, Any]]) -> list[str]:
    """One line per pruning run: target, achieved cut, saliency gap of its decision score."""
    notes = []
    for name, r in prunes.items():
        gap = r.get("saliency_gap")
        line = (f"- `{name}`: MACs cut {r['achieved_reduction']:.1%} (target {r['macs_reduction']:.0%}), "
                f"{r['dense']['gmacs']:.3g} -> {r['pruned']['gmacs']:.3g} GMACs")
        if gap is not None:
            line += f"; saliency gap (smallest kept / largest removed decision score) {gap:.3g}"
        notes.append(line)
    return notes
