"""Stage `prune`: remove channels from the dense model until its MACs fall by a target.

The method (a name in pipeline/pruning/registry.py) and the MAC target come from the
command line, which dvc.yaml's matrix fills from the `sweep` section. Instead of MACs, a
target may be a device's latency (`--latency-reduction`, `--latency-ms`), predicted by its
latency table (`--latency-table`, see pipeline/latency/); how to sparsify comes from
the `prune` section (its common keys and the method's own block). Works on any model
folder (model.json + model.pt), e.g. your own smp checkpoint, without the earlier stages:
`--out DIR` alone puts the model, its record (DIR/prune.json) and curves (DIR/logs) in DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dvclive import Live

from pipeline.artifact import save_model, write_json
from pipeline.errors import PipelineError
from pipeline.params import load_sections
from pipeline.pruning.costs import KINDS, Target
from pipeline.pruning.latency_target import LatencyPlan
from pipeline.pruning.registry import method_names
from pipeline.pruning.run import prune
from pipeline.selection import SCORE
from pipeline.stages._cli import add_output, add_paths, add_resume, output_paths, parser, run, wall_seconds
from pipeline.stages._training import resume_store

RECORD = "prune.json"  # the record's name in --out when --report is not given


def chosen_target(args: argparse.Namespace) -> Target:
    """The one target the command line gives (-50 % MACs if none)."""
    for kind in KINDS:
        value = getattr(args, kind)
        if value is not None:
            try:
                return Target(kind, value)
            except ValueError as err:
                raise PipelineError(str(err)) from None
    return Target("macs_reduction", 0.5)


def main(argv: list[str] | None = None) -> None:
    """Prune --model by --method to --macs-reduction; write --out and --report."""
    p = parser(__doc__)
    p.add_argument("--method", default="hqs_l0", choices=method_names(), help="pruning method (default: hqs_l0)")
    targets = p.add_mutually_exclusive_group()
    targets.add_argument("--macs-reduction", type=float, help="fraction of the dense MACs to remove (default: 0.5)")
    targets.add_argument("--latency-reduction", type=float,
                         help="fraction of the dense model's predicted latency to remove (needs --latency-table)")
    targets.add_argument("--latency-ms", type=float,
                         help="predicted latency to prune to, in ms (needs --latency-table)")
    p.add_argument("--latency-table", type=Path,
                   help="a device's latency table: the folder pipeline.latency.layers wrote, with the timings.json "
                        "deploy/time_layers.py wrote on the device")
    add_paths(p, model=("checkpoints/dense", "dense model folder"), data=("data/prepared", "prepared data set"))
    add_output(p, RECORD, "pruned model")
    add_resume(p)
    args = p.parse_args(argv)
    output_paths(args, RECORD)

    def body() -> None:
        sections = load_sections(args.params, "base", "trainer", "prune")
        base, trainer, cfg = sections
        target = chosen_target(args)
        resume = resume_store(args.resume_dir, f"prune-{args.method}-{target.kind}-{target.value}", *sections)
        plan = LatencyPlan(args.latency_table) if target.latency else None
        done = prune(args.model, args.data, args.method, target, cfg, trainer, base.seed, args.logs, resume, plan)
        if done is None:  # a DDP rank other than 0: rank 0 writes the outputs
            return
        pruned, card, record = done
        if not args.logs.exists():  # one-shot methods train nothing: their curve is one point, after removal
            with Live(str(args.logs), save_dvc_exp=False, dvcyaml=False) as live:
                for name, value in record["after_removal"].items():
                    live.log_metric(name, value)
        save_model(pruned, args.out, card)
        record["wall_seconds"] = wall_seconds()
        write_json(record, args.report)
        resume.clear()
        after = record["after_removal"]
        raw = record["after_removal_raw"][SCORE]
        raw = f", {raw:.3f} before BN recalibration" if record["recalibrated"] else ""
        latency = record.get("latency")
        timed = "" if latency is None else (f", predicted {latency['predicted_ms']:.1f} ms (budget "
                                            f"{latency['budget_ms']:.1f} ms, measured "
                                            f"{latency.get('measured_ms', float('nan')):.1f} ms)")
        print(f"{args.method}: MACs -{record['achieved_reduction']:.1%} (target {target}){timed}, "
              f"{SCORE} right after removal {after[SCORE]:.3f}{raw} (dense {record['dense'].get(SCORE, 0):.3f})")

    run(body)


if __name__ == "__main__":
    main()
