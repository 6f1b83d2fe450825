"""Stage `finetune`: recover the pruned model's accuracy with the dense model's loss.

Equal budgets: methods that did not spend `prune.epochs` sparsifying get those epochs here
on top of `finetune.epochs`. `finetune.distill: logit` distils from the dense model.
`--out DIR` alone puts the model, its record (DIR/finetune.json) and curves (DIR/logs) in DIR.
"""

from __future__ import annotations

from pipeline.artifact import save_model, write_json
from pipeline.params import load_sections
from pipeline.pruning.run import finetune
from pipeline.stages._cli import add_output, add_paths, add_resume, output_paths, parser, run, wall_seconds
from pipeline.stages._training import resume_store

RECORD = "finetune.json"  # the record's name in --out when --report is not given


def main(argv: list[str] | None = None) -> None:
    """Fine-tune --model (a pruned model folder); write --out and --report."""
    p = parser(__doc__)
    add_paths(p, model=("checkpoints/pruned/hqs_l0-0.5", "pruned model folder"),
              dense=("checkpoints/dense", "dense model, the teacher"), data=("data/prepared", "prepared data set"))
    add_output(p, RECORD, "fine-tuned model")
    add_resume(p)
    args = p.parse_args(argv)
    output_paths(args, RECORD)

    def body() -> None:
        sections = load_sections(args.params, "base", "trainer", "finetune")
        base, trainer, cfg = sections
        resume = resume_store(args.resume_dir, f"finetune-{args.out.name}", *sections)
        done = finetune(args.model, args.dense, args.data, cfg, trainer, base.seed, args.logs, resume)
        if done is None:  # a DDP rank other than 0: rank 0 writes the outputs
            return
        model, card, record = done
        save_model(model, args.out, card)
        record["wall_seconds"] = wall_seconds()
        write_json(record, args.report)
        resume.clear()
        print(f"{record['method']}: test IoU {record['after_removal'].get('test/iou', 0):.3f} after removal -> "
              f"{record['final']['test/iou']:.3f} after {record['epochs']} epochs")

    run(body)


if __name__ == "__main__":
    main()
