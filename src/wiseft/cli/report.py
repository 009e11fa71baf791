"""`wiseft report STORE_OR_RUN -o DIR`: results (a run directory, results.json or a sample store) → report."""

from __future__ import annotations

import argparse
from pathlib import Path

from wiseft.atomic import check_output_dir
from wiseft.cli.progress import stdout_console
from wiseft.errors import ConfigError
from wiseft.grids import parse_ks


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write report.md, a self-contained report.html and PNG plots from a run or a sample store",
        description=(
            "Turn a run directory (with results.json), a results.json file, a sample store or the "
            "metrics.json of wiseft score/eval into report.md, report.html (images embedded; opens "
            "offline) and the PNG plots."
        ),
    )
    p.add_argument(
        "source", metavar="STORE_OR_RUN", help="run directory, results.json, sample store or metrics.json"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report directory to write")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument(
        "--k",
        metavar="K,K,…",
        help="the k values to plot and tabulate, e.g. 1,4,16 (default: Pass@1 and the largest k of the run)",
    )
    p.add_argument(
        "--length-reference",
        metavar="VARIANT",
        help="for a sample store: lengths of every variant relative to this one (e.g. the Thinking model's "
        "variant), with paired intervals",
    )
    p.add_argument(
        "--rl",
        action="append",
        default=[],
        metavar="DIR",
        help="a GRPO run directory (or a directory of them) whose grpo_log.jsonl to draw, repeatable "
        "(the RL runs inside STORE_OR_RUN are found without it)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from wiseft import report

    ks = list(parse_ks(args.k)) if args.k is not None else None
    out = Path(args.output)
    check_output_dir(out, args.force)
    console = stdout_console()
    with console.status(f"reading {args.source}"):
        results = report.load_results(args.source, length_reference=args.length_reference)
        rl = [run for where in [args.source, *args.rl] for run in report.load_rl_runs(where)]
        missing = [d for d in args.rl if not report.find_rl_logs(d)]
        if missing:
            raise ConfigError(f"--rl {missing[0]}: no grpo_log.jsonl in it, in DIR/*/ or in DIR/rl/*/")
    with console.status(f"drawing the plots and writing {out}"):
        path = report.build(results, out, ks=ks, force=args.force, source=str(args.source), rl=rl)
    files = sorted(path.iterdir(), key=lambda f: (f.suffix != ".html", f.suffix != ".md", f.name))
    for f in files:  # the full paths, one per line, never cut to the terminal width
        console.print(str(f), soft_wrap=True, highlight=False)
    titles = {f"{name}.png": title for name, title, _caption, _fn in [*report.PLOTS, *report.RL_PLOTS]}
    titles[f"{report.thinking.PLOT[0]}.png"] = report.thinking.PLOT[1]
    table = Table(title=f"wiseft report: {len(results.variants)} variants → {path}")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("shows")
    for f in files:
        table.add_row(f.name, f"{f.stat().st_size / 1024:.0f} KiB", titles.get(f.name, ""))
    console.print(table)
    return 0
