"""The benchmark's pruned arms: the seed's dense model pruned by one method to one MAC
target, then fine-tuned; the record body keeps the figures right after removal (before and
after BatchNorm recalibration, before and after zeroing the dropped templates), after
fine-tuning, the val-score curve, the compute and the per-image test counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.dense import training_macs
from pipeline.artifact import save_model
from pipeline.config import FinetuneCfg, PruneCfg, TrainCfg, TrainerCfg
from pipeline.curves import dvclive_curve
from pipeline.pruning.costs import Target, TargetPlan
from pipeline.pruning.run import finetune, prune
from pipeline.scoring import split_counts
from pipeline.selection import SCORE


def steps_to_recover(after_removal: float, curve: list[tuple[int, float]], goal: float) -> int | None:
    """Fine-tuning steps until the val score >= goal: 0 if already there after removal, None if never."""
    if after_removal >= goal:
        return 0
    return next((step + 1 for step, score in curve if score >= goal), None)


def pruned_run(sections: dict[str, Any], data: Path, dense_folder: Path, folder: Path, seed: int, method: str,
               target: float | Target, prune_cfg: PruneCfg, dense_score: float, within: float,
               plan: TargetPlan | None = None) -> dict[str, Any]:
    """Prune `dense_folder`'s model by `method` to `target` (a MAC share, or a latency
    `Target` met through `plan`), fine-tune, score; models go to folder/pruned and
    folder/final. `prune_cfg` may carry tuned options of the method."""
    trainer: TrainerCfg = sections["trainer"]
    finetune_cfg: FinetuneCfg = sections["finetune"]
    started = time.time()
    pruned, card, record = prune(dense_folder, data, method, target, prune_cfg, trainer, seed, folder / "prune-logs",
                                 plan=plan)
    after_counts = split_counts(pruned, data, card.threshold)
    save_model(pruned, folder / "pruned", card)
    model, final_card, final = finetune(folder / "pruned", dense_folder, data, finetune_cfg, trainer, seed,
                                        folder / "finetune-logs")
    save_model(model, folder / "final", final_card)
    logs = folder / "finetune-logs"
    train = TrainCfg.model_validate(card.train.model_dump())  # the crops and batches both phases trained on
    sparsify_epochs = record["sparsify_epochs"]
    sparsify_curve = dvclive_curve(folder / "prune-logs", SCORE)
    compute = {"sparsify_tmacs": training_macs(record["dense"]["gmacs"], data, train, sparsify_epochs),
               "finetune_tmacs": training_macs(final["final"]["gmacs"], data, train, final["epochs_trained"])}
    after_score = record["after_removal"][SCORE]
    body = scored_final(final, model, data, logs)
    return {
        "arm": "pruned", "seed": seed, "method": method, "macs_reduction": record["macs_reduction"],
        "target": record["target"], "latency": record.get("latency"),
        "options": prune_cfg.method_options(method),
        "achieved_reduction": record["achieved_reduction"], "gmacs": record["pruned"]["gmacs"],
        "mparams": record["pruned"]["mparams"],
        "after_removal": record["after_removal"], "after_removal_raw": record.get("after_removal_raw"),
        "recalibrated": record.get("recalibrated", False), "masking": record.get("masking"),
        "saliency_gap": record.get("saliency_gap"), "tied_share": record.get("tied_share"),
        "decision_seconds": record.get("decision_seconds"), "sparsify_curve": sparsify_curve,
        "after_counts": after_counts, **body, "finetune_epochs": final["epochs"],
        "steps_to_recover": steps_to_recover(after_score, body["val_curve"], dense_score - within),
        **compute, "train_tmacs": compute["sparsify_tmacs"] + compute["finetune_tmacs"],
        "seconds": time.time() - started,
    }


def scored_final(final: dict[str, Any], model: Any, data: Path, logs: Path) -> dict[str, Any]:
    """The fine-tuned model's figures in the dense arms' shape (bench.dense.scored)."""
    row = final["final"]
    return {"metrics": {k: v for k, v in row.items() if "/" in k}, "threshold": row["threshold"],
            "val_score": row[SCORE], "val_curve": dvclive_curve(logs, SCORE), "epochs": final["epochs_trained"],
            "test_counts": split_counts(model, data, row["threshold"])}

