"""Stage `prune`: remove channels from the dense model until its MACs fall by a target.

The method (a name in pipeline/pruning/registry.py) and the MAC target come from the
command line, which dvc.yaml's matrix fills from the `sweep` section; how to sparsify from
the `prune` section (its common keys and the method's own block). Works on any model
folder (model.json + model.pt), e.g. your own smp checkpoint, without the earlier stages:
`--out DIR` alone puts the model, its record (DIR/prune.json) and curves (DIR/logs) in DIR.
"""

from __future__ import annotations

from dvclive import Live

from pipeline.artifact import save_model, write_json
from pipeline.errors import PipelineError
from pipeline.params import load_sections
from pipeline.pruning.registry import method_names
from pipeline.pruning.run import prune
from pipeline.selection import SCORE
from pipeline.stages._cli import add_output, add_paths, add_resume, output_paths, parser, run, wall_seconds
from pipeline.stages._training import resume_store

RECORD = "prune.json"  # the record's name in --out when --report is not given


def main(argv: list[str] | None = None) -> None:
    """Prune --model by --method to --macs-reduction; write --out and --report."""
    p = parser(__doc__)
    p.add_argument("--method", default="hqs_l0", choices=method_names(), help="pruning method (default: hqs_l0)")
    p.add_argument("--macs-reduction", type=float, default=0.5, help="fraction of the dense MACs to remove")
    add_paths(p, model=("checkpoints/dense", "dense model folder"), data=("data/prepared", "prepared data set"))
    add_output(p, RECORD, "pruned model")
    add_resume(p)
    args = p.parse_args(argv)
    output_paths(args, RECORD)

    def body() -> None:
        sections = load_sections(args.params, "base", "trainer", "prune")
        base, trainer, cfg = sections
        resume = resume_store(args.resume_dir, f"prune-{args.method}-{args.macs_reduction}", *sections)
        if not 0 < args.macs_reduction < 1:
            raise PipelineError(f"--macs-reduction must lie in (0, 1), got {args.macs_reduction}")
        done = prune(args.model, args.data, args.method, args.macs_reduction, cfg, trainer, base.seed, args.logs,
                     resume)
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
        print(f"{args.method}: MACs -{record['achieved_reduction']:.1%} (target -{args.macs_reduction:.0%}), "
              f"{SCORE} right after removal {after[SCORE]:.3f}{raw} (dense {record['dense'].get(SCORE, 0):.3f})")

    run(body)


if __name__ == "__main__":
    main()
