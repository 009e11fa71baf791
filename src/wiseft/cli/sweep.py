"""`wiseft sweep EARLY FINAL --delta 0:1:0.125 --task T --n N --k …`: WiSE-FT mixes without checkpoints.

Also the shared pieces of `wiseft eval` and `wiseft trajectory`: the common flags, YAML + flags → frozen
config, rich progress bars per variant, the final table, and writing results beside the resolved config.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from wiseft.cli.progress import LogLines
from wiseft.errors import OutputError

COMMON = (
    "task", "data", "limit", "prompt", "n", "k", "temperature", "top_p", "top_k", "max_new_tokens", "seed",
    "device", "threads", "chunk", "workers", "n_boot", "store",
)  # fmt: skip


def add_common_args(p: argparse.ArgumentParser, default_out: str) -> None:
    """Flags of every evaluating command. Defaults are None so a YAML --config can fill them in."""
    p.add_argument("--config", help="YAML file with any of the settings below (flags override it)")
    p.add_argument(
        "--task", help="task name: gsm8k, math, math500, aime24, aime25, jsonl, toy (default gsm8k)"
    )
    p.add_argument("--data", help="local data file or directory of the task (default: the Hub)")
    p.add_argument("--limit", type=int, help="use only the first N problems")
    p.add_argument("--prompt", choices=("plain", "chat"), help="prompt style (default plain)")
    p.add_argument("--n", type=int, help="samples per problem (default 16)")
    p.add_argument("--k", help="comma-separated k for Pass@k/maj@k, each <= n (default 1)")
    p.add_argument("--temperature", help="sampling temperature(s), comma-separated (default 1.0)")
    p.add_argument("--top-p", type=float, help="nucleus sampling (default 1: off)")
    p.add_argument("--top-k", type=int, help="top-k sampling (default 0: off)")
    p.add_argument("--max-new-tokens", type=int, help="length limit per completion (default 512)")
    p.add_argument("--seed", type=int, help="sampling, split and bootstrap seed (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for sampling (default: torch's; 1 is best for tiny models on a busy machine)",
    )
    p.add_argument("--chunk", type=int, help="problems sampled and committed together (default 64)")
    p.add_argument("--workers", type=int, help="grader worker processes (default: automatic)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--store", help="sample store (SQLite; default OUTPUT/samples.db); reruns resume from it")
    p.add_argument("-o", "--output", default=default_out, help=f"output directory (default {default_out})")
    p.add_argument("--force", action="store_true", help="recompute results in an output that has them")


def overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def prepare_output(args: argparse.Namespace, result_file: str) -> Path:
    """The output directory may hold a killed run's store (resume), but not finished results unless
    --force. Checked before any work."""
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory; choose another -o/--output")
    if (out / result_file).exists() and not args.force:
        raise OutputError(
            f"output {out} already holds {result_file}; pass --force to recompute it (stored samples are "
            "reused) or choose another -o/--output"
        )
    return out


class ProgressView:
    """A rich progress display with one bar per (variant, stage): the library's progress callback.
    transformers' own per-load bars are switched off for the command (they would interleave)."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )  # fmt: skip
        self.tasks: dict[tuple[str, str], Any] = {}
        self.lines = LogLines(console)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, variant: str, stage: str, done: int, total: int) -> None:
        key = (variant, stage)
        verb = {"sample": "sampling", "grade": "grading"}.get(stage, stage)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{verb} {variant}", total=total)
        self.progress.update(self.tasks[key], completed=done, total=total)
        self.lines.update(key, f"{verb} {variant}", done, total)


def table_console():
    """The console for final tables: the terminal's width, or 140 columns when output is piped (a log
    file should keep every column rather than squeeze them to 80)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)


def interval(m: dict | None) -> str:
    if not m:
        return "-"
    return f"{m['value']:.3f} [{m['lo']:.2f},{m['hi']:.2f}]"


def results_table(console, results: dict, title: str) -> None:
    """One row per variant: Pass@1, Pass@k and maj@k at the largest k (with intervals), distinct answers
    and mean tokens. Every k is in results.json and the report; the terminal gets the headline."""
    from rich.table import Table

    variants = results["variants"]
    top = max(results["config"]["k"])
    names = ["pass@1"] + ([f"pass@{top}", f"maj@{top}"] if top > 1 else [])
    table = Table(title=title, caption="value [95% bootstrap interval over problems]")
    table.add_column("variant", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("distinct", justify="right")
    table.add_column("tokens", justify="right")
    best = (results.get("best") or {}).get("variant")
    for v in variants:
        s = v["summary"]
        tok = s["tokens"]["mean"]
        row = [("★ " if v["name"] == best else "") + v["name"]]
        row += [interval(s["metrics"].get(n)) for n in names]
        row += [f"{s['diversity']['mean_distinct']:.2f}", f"{tok:.1f}" if tok is not None else "-"]
        table.add_row(*row)
    console.print(table)
    if results.get("best"):
        b = results["best"]
        shown = interval(b.get("test") or b.get("value"))
        console.print(f"best by {b['metric']}: [bold]{b['variant']}[/bold] — {b['how']}: {shown}")


def write_results(out: Path, results: dict, cfg, no_report: bool, console) -> None:
    """results.json and the resolved config beside it; then the report unless --no-report."""
    from wiseft.atomic import write_json
    from wiseft.config import write_resolved

    write_json(out / "results.json", results)
    write_resolved(out, cfg)
    if no_report or importlib.util.find_spec("wiseft.report") is None:
        return
    from wiseft import report

    built = report.build(results, out / "report", force=True)
    console.print(f"report: {built / 'report.html'}")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="sample, grade and score WiSE-FT mixes of two checkpoints over a δ grid (no checkpoint per δ)",
        description="Evaluate θ(δ) = δ·EARLY + (1−δ)·FINAL for each δ in a grid (× temperatures), with the "
        "weights materialised in memory. Resumable: samples are kept in a SQLite store.",
    )
    p.add_argument("anchors", nargs="*", help="EARLY FINAL model directories (or give --recipe)")
    p.add_argument("--recipe", help="a merge recipe YAML (wiseft merge) instead of two anchors")
    p.add_argument("--delta", help="δ grid: start:stop:step or comma-separated (default 0:1:0.125)")
    p.add_argument("--extrapolate", action="store_true", default=None, help="allow δ outside [0, 1]")
    p.add_argument(
        "--val-fraction", type=float, help="share of problems that choose δ (default 0.5; 0: none)"
    )
    p.add_argument("--metric", help="metric that chooses the best δ, e.g. pass@1, pass@16 (default pass@1)")
    p.add_argument("--no-report", action="store_true", help="do not build the report")
    add_common_args(p, "sweep-out")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from wiseft.config import load
    from wiseft.sweep import SweepConfig, run_sweep

    flags = overrides(args, COMMON + ("recipe", "delta", "extrapolate", "val_fraction", "metric"))
    if args.anchors:
        flags["anchors"] = tuple(args.anchors)
    cfg = load(SweepConfig, args.config, flags)
    out = prepare_output(args, "results.json")
    console = Console(stderr=True)
    with ProgressView(console) as view:
        results = run_sweep(cfg, out, progress=view)
    write_results(out, results, cfg, args.no_report, console)
    show = table_console()
    results_table(show, results, f"sweep: {results['task']['n_problems']} problems × n={cfg.n}")
    show.print(f"results written to {out / 'results.json'}")
    return 0
