"""The model to ship, chosen by the rule of params.yaml's `pick` section (pipeline.sections.PickCfg).

The cheapest model (fewest GMACs, or parameters) among the dense model and the fine-tuned
runs whose val score is at most `max_iou_drop` below the dense model's; failed runs
(pipeline.selection.failed) never qualify, and the dense model always does, so there is
always an answer. Only val figures and counted costs decide: test figures are carried along
for the report and never read here, so the test split stays an unbiased estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.params import load_params
from pipeline.sections import PickCfg
from pipeline.selection import FAIL_SHARE, SCORE, failed
from pipeline.tolerance import COST_TIE, cheapest_within, same_cost, within

DENSE = "dense"
OBJECTIVES = {"gmacs": "GMACs", "mparams": "Mparams"}
REPORTED = ("test/iou",)  # carried to the table for the report, never read by the rule


def candidate_table(dense: dict[str, Any], runs: dict[str, dict[str, Any]], rule: PickCfg) -> list[dict[str, Any]]:
    """One row per model (dense first, then the runs by name): val score, its drop from dense,
    costs, the reported test figures, `failed` and whether it `qualifies` under `rule`."""
    base = dense[SCORE]
    table = []
    for name, row in [(DENSE, dense), *sorted(runs.items())]:
        broken = name != DENSE and failed(row[SCORE], base)
        drop = base - row[SCORE]
        table.append({"model": name, SCORE: row[SCORE], "val_drop": drop, "gmacs": row["gmacs"],
                      "mparams": row["mparams"], **{key: row[key] for key in REPORTED if key in row},
                      "failed": broken, "qualifies": not broken and within(row[SCORE], base, rule.max_iou_drop)})
    return table


def _verdict(row: dict[str, Any], chosen: str, by_rule: str, rule: PickCfg) -> str:
    """Why one candidate is or is not the choice (`chosen`; `by_rule` the rule's), in a few words."""
    if row["model"] == chosen:
        return "chosen" if chosen == by_rule else "chosen (pick.model)"
    if row["model"] == by_rule:
        return "the rule's choice, overridden by pick.model"
    if row["failed"]:
        return f"failed run (val score below {FAIL_SHARE:.0%} of dense)"
    if not row["qualifies"]:
        return f"val drop {row['val_drop']:.3f} > {rule.max_iou_drop:.3f}"
    return f"qualifies, more {OBJECTIVES[rule.objective]}"


def _reason(table: list[dict[str, Any]], chosen: dict[str, Any], rule: PickCfg) -> str:
    """One line: why the rule chose `chosen`, naming the cheaper models it passed over."""
    unit, key = OBJECTIVES[rule.objective], rule.objective
    dense, runs = table[0], table[1:]
    within = f"within {rule.max_iou_drop:.3f} of the dense val IoU ({SCORE})"
    if chosen["model"] == DENSE:
        if not runs:
            return "no fine-tuned run in the sweep: the dense model is the only candidate"
        usable = [r for r in runs if not r["failed"]]
        if not usable:
            return f"every fine-tuned run failed (val score below {FAIL_SHARE:.0%} of dense): shipping dense"
        best = min(usable, key=lambda r: r["val_drop"])
        if not any(r["qualifies"] for r in runs):
            return (f"no fine-tuned run is {within}: the closest, `{best['model']}`, is "
                    f"{best['val_drop']:.3f} below; shipping dense")
    passed = [r for r in table if r[key] < chosen[key] and not r["qualifies"]]
    skipped = "; ".join(f"`{r['model']}` (" + ("failed" if r["failed"] else f"val drop {r['val_drop']:.3f}") + ")"
                        for r in passed)
    tied = [r["model"] for r in table if r["qualifies"] and r is not chosen and same_cost(r[key], chosen[key])]
    line = (f"`{chosen['model']}` has the fewest {unit} ({chosen[key]:.3g}, dense {dense[key]:.3g}) of the models "
            f"{within} (its drop: {chosen['val_drop']:.3f})")
    if tied:
        line += (f"; {', '.join(f'`{name}`' for name in tied)} cost the same within {COST_TIE:.0%} "
                 "and score lower on val")
    return line + (f"; cheaper but excluded: {skipped}" if skipped else "")


def choose(dense: dict[str, Any], runs: dict[str, dict[str, Any]], rule: PickCfg) -> dict[str, Any]:
    """Apply `rule` to the dense model's and the fine-tuned runs' figures ({SCORE, "gmacs",
    "mparams"}, optionally test figures, which are only reported). Returns the JSON the pick
    stage writes: {"choice", "rule", "reason", "forced", "candidates": [...]}."""
    table = candidate_table(dense, runs, rule)
    usable = {row["model"]: row for row in table if not row["failed"]}  # dense never fails: never empty
    by_rule = usable[cheapest_within(usable, table[0][SCORE], rule.max_iou_drop, rule.objective)]
    chosen, reason = by_rule, _reason(table, by_rule, rule)
    if rule.model is not None:
        names = [row["model"] for row in table]
        if rule.model not in names:
            raise PipelineError(f"pick.model: {rule.model!r} is not a fine-tuned run of the sweep nor "
                                f"{DENSE!r} (candidates: {', '.join(names)})")
        chosen = next(row for row in table if row["model"] == rule.model)
        reason = f"forced by pick.model (the rule alone would ship `{by_rule['model']}`)"
        if chosen["failed"]:
            reason += f"; **`{chosen['model']}` is a failed run**"
    for row in table:
        row["verdict"] = _verdict(row, chosen["model"], by_rule["model"], rule)
    return {"choice": chosen["model"], "rule": rule.model_dump(), "reason": reason,
            "forced": rule.model is not None, "candidates": table}


def refuse_export_model(params: Path) -> None:
    """`export.model` (a fixed choice) was replaced by the pick stage; the frozen ExportCfg
    still accepts the key, so say so instead of ignoring it silently."""
    if "model" in (load_params(params).get("export") or {}):
        raise PipelineError(f"{params}: export.model is no longer read: the pick stage chooses the model to ship "
                            f"(params `pick`); set pick.model to force one")
