"""`wiseft sweep EARLY FINAL --delta 0:1:0.125 --task T --n N --k …`: WiSE-FT mixes without checkpoints."""

from __future__ import annotations

from wiseft.cli._common import add_eval_args, load_config, start_ray_early
from wiseft.cli.progress import ProgressView, stderr_console
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
    p.add_argument(
        "--dry-run", action="store_true",
        help="list the variants and the tensors each moves (headers only); sample and write nothing",
    )  # fmt: skip
    add_eval_args(p, SweepConfig, "sweep-out")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(SweepConfig, args, anchors=tuple(args.anchors) or None)
    if not args.dry_run:
        start_ray_early(cfg)
    from wiseft.cli.tables import print_warnings, results_table, table_console
    from wiseft.evaluate.runners import dry_run_sweep, run_sweep

    if args.dry_run:
        show_dry_run(table_console(), dry_run_sweep(cfg))
        return 0
    console = stderr_console()
    with ProgressView(console) as view:
        results = run_sweep(cfg, args.output, progress=view, report=not args.no_report, force=args.force)
    show = table_console()
    if not args.no_report:
        console.print(f"report: {args.output}/report/report.html")
    results_table(show, results, f"sweep: {results.task['n_problems']} problems × n={cfg.n}")
    print_warnings(console, results)
    show.print(f"results written to {args.output}/results.json")
    return 0


def show_dry_run(console, rows: list[dict]) -> None:
    """Each planned variant and the tensors it moves (indices folded); nothing was sampled or written."""
    for row in rows:
        console.print(f"[bold]{row['name']}[/bold]: moves {row['n_moved']} of {row['n_tensors']} tensors")
        for name in row["moved"]:
            console.print(f"  {name}", markup=False, highlight=False)
    console.print(f"{len(rows)} variant(s) planned; dry run: nothing sampled or written")
