"""Stage `baseline`: train each candidate architecture/encoder and pick one by accuracy vs cost."""

from __future__ import annotations

from pathlib import Path

from pipeline.artifact import write_json
from pipeline.config import ModelCfg
from pipeline.params import load_sections, parse_section
from pipeline.plots import iou_vs_gmacs
from pipeline.pretrain import drop_kept_set, pretrain_variants, synthetic_set
from pipeline.stages._cli import add_resume, parser, run, wall_seconds
from pipeline.stages._training import resume_store
from pipeline.study import Variant, run_study


def candidate_name(cfg: ModelCfg, overrides: dict) -> str:
    """`Unet-resnet18`, plus the other overridden keys when they make the difference."""
    extra = [f"{k}={v}" for k, v in sorted(overrides.items()) if k not in ("arch", "encoder")]
    return "-".join([cfg.arch, cfg.encoder, *extra])


def main(argv: list[str] | None = None) -> None:
    """Train `baseline.candidates` (overrides of `model`) and keep the chosen one; with
    `pretrain.enabled`, each first on synthetic data (pipeline.pretrain)."""
    p = parser(__doc__)
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--out", type=Path, default=Path("checkpoints/baseline"))
    p.add_argument("--report", type=Path, default=Path("reports/baseline.json"))
    p.add_argument("--plot", type=Path, default=Path("reports/baseline_iou_vs_gmacs.png"))
    p.add_argument("--logs", type=Path, default=Path("logs/baseline"))
    add_resume(p)
    args = p.parse_args(argv)

    def body() -> None:
        sections = load_sections(args.params, "base", "model", "train", "trainer", "baseline", "pretrain")
        base, model, train, trainer, cfg, pre = sections
        resume = resume_store(args.resume_dir, "baseline", *sections)
        variants = []
        for overrides in cfg.candidates:
            candidate = parse_section({"model": {**model.model_dump(), **overrides}}, "model", ModelCfg,
                                      f"{args.params} (baseline.candidates)")
            variants.append(Variant(candidate_name(candidate, overrides), candidate, train))
        pretrained = {"enabled": False}
        if pre.enabled:  # synthetic first, then the real data from those weights
            with synthetic_set(pre, base, args.resume_dir) as synthetic:
                variants, pretrained = pretrain_variants(variants, pre, base, trainer, synthetic, args.logs, resume)
        record = run_study(variants, trainer, args.data, args.logs, base.seed, base.num_classes,
                           cfg.cost_size, cfg.iou_tolerance, args.out, resume)
        if record is None:  # a DDP rank other than 0: rank 0 writes the outputs
            return
        record["pretrain"] = pretrained
        record["wall_seconds"] = wall_seconds()
        write_json(record, args.report)
        iou_vs_gmacs(record["candidates"], record["winner"], args.plot, "baseline candidates")
        resume.clear()
        if pre.enabled:
            drop_kept_set(pre, base, args.resume_dir)
        print(f"chosen: {record['winner']}")

    run(body)


if __name__ == "__main__":
    main()
