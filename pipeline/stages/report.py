"""Stage `report`: every model the pipeline produced for the current sweep, accuracy against
cost, in reports/report.md and a self-contained reports/report.html, plus reports/report.json
(every model's figures), reports/summary.json (the few that `dvc metrics show` lists), and
reports/pareto.json and reports/curves.json (for `dvc plots show`).

Latency: batch 1 at the evaluation size, `report.threads` threads, warm-up, the dense and
every fine-tuned model interleaved round by round, eager PyTorch and ONNX Runtime; speed-up
= median over rounds of the paired ratio to dense; MACs counted at that size. Peak memory
(ONNX Runtime): a fresh process per model. The report opens with the verdict on the model the
pick stage chose (--pick).
Only the runs of `sweep` are read: records of runs that left it are ignored.
"""

from __future__ import annotations

from dataclasses import fields

from pipeline.params import load_sections
from pipeline.report.build import ReportPaths, write_report
from pipeline.stages._cli import add_paths, parser, run


def main(argv: list[str] | None = None) -> None:
    """Parse the paths, read the report and sweep sections, write the report."""
    p = parser(__doc__)
    add_paths(p, reports=("reports", "stage records folder"), checkpoints=("checkpoints", "model folders"),
              data=("data/prepared", "prepared data set"), logs=("logs", "training curves (DVCLive)"),
              out=("reports/report.md", "Markdown report"), html=("reports/report.html", "HTML report"),
              metrics=("reports/report.json", "every model's figures"), points=("reports/pareto.json", "plot data"),
              plots=("reports/figures", "figures folder"), summary=("reports/summary.json", "figures DVC lists"),
              curves=("reports/curves.json", "val score per epoch per model"),
              pick=("reports/pick.json", "the pick stage's choice of the model to ship"))
    args = p.parse_args(argv)

    def body() -> None:
        cfg, sweep = load_sections(args.params, "report", "sweep")
        paths = ReportPaths(**{field.name: getattr(args, field.name) for field in fields(ReportPaths)})
        print(write_report(paths, cfg, sweep))

    run(body)


if __name__ == "__main__":
    main()
