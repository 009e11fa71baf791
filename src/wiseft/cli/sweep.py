"""`wiseft sweep EARLY FINAL --delta 0:1:0.125 --task T --n N --k …`: WiSE-FT mixes without checkpoints."""

from __future__ import annotations

from wiseft.cli._common import ProgressView, add_eval_args, load_config, results_table, table_console
from wiseft.cli.progress import stderr_console
from wiseft.evaluate.config import SweepConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="sample, grade and score WiSE-FT mixes of two checkpoints over a δ grid (no checkpoint per δ)",
        description="Evaluate θ(δ) = δ·EARLY + (1−δ)·FINAL for each δ in a grid (× temperatures), with the "
        "weights materialised in memory. Resumable: samples are kept in a SQLite store.",
    )
    p.add_argument("anchors", nargs="*", help="EARLY FINAL model directories (or give --recipe)")
    p.add_argument("--no-report", action="store_true", help="do not build the report")
    add_eval_args(p, SweepConfig, "sweep-out")
    p.set_defaults(func=run)


def run(args) -> int:

    from wiseft.evaluate.runners import run_sweep

    cfg = load_config(SweepConfig, args, anchors=tuple(args.anchors) or None)
    console = stderr_console()
    with ProgressView(console) as view:
        results = run_sweep(cfg, args.output, progress=view, report=not args.no_report, force=args.force)
    show = table_console()
    if not args.no_report:
        console.print(f"report: {args.output}/report/report.html")
    results_table(show, results, f"sweep: {results.task['n_problems']} problems × n={cfg.n}")
    show.print(f"results written to {args.output}/results.json")
    return 0
