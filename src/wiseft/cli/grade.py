"""`wiseft grade SAMPLES.jsonl --task T`: add extracted answer, verdict and answer class to each sample.

Samples come from a *source* and graded records go back to it. Today the source is a JSONL file
(`JsonlSource`); a store-backed source only needs the same two methods (`records()`, `write(graded)`),
so `open_source` is the one place to extend.
"""

from __future__ import annotations

import time
from pathlib import Path

from wiseft.errors import ConfigError, OutputError


class JsonlSource:
    """Sample records read from a JSONL file; graded records written to another JSONL file."""

    def __init__(self, path: str, output: str | None, force: bool):
        self.path = Path(path)
        self.output = Path(output) if output else self.path.with_name(self.path.stem + ".graded.jsonl")
        if self.output.resolve() == self.path.resolve():
            raise OutputError(f"-o/--output {self.output} is the samples file itself; choose another path")
        if self.output.exists() and not force:
            raise OutputError(
                f"output {self.output} already exists; choose another -o/--output or pass --force"
            )

    def records(self) -> list[dict]:
        from wiseft.grading.records import read_records

        return read_records(self.path)

    def write(self, graded: list[dict]) -> str:
        from wiseft.grading.records import write_records

        write_records(self.output, graded)
        return str(self.output)


def open_source(args) -> JsonlSource:
    return JsonlSource(args.samples, args.output, args.force)


def parse_task_options(items: list[str]) -> dict:
    """--task-option KEY=VALUE pairs; true/false and integers are converted, the rest stay strings."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--task-option must look like KEY=VALUE, got {item!r}")
        low = value.strip().lower()
        if low in ("true", "false"):
            options[key.strip()] = low == "true"
        elif low.lstrip("-").isdigit():
            options[key.strip()] = int(low)
        else:
            options[key.strip()] = value
    return options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grade",
        help="grade sampled completions: extract the final answer, verify it, group equal answers",
        description="Add answer, extraction, verdict, correct, answer_class and grader to every sample "
        "record of SAMPLES.jsonl (schema in the README) and write the graded records as JSONL.",
    )
    p.add_argument("samples", help="JSONL of sample records (problem_id, sample_idx, completion, …)")
    p.add_argument("--task", required=True, help="task the samples answer: gsm8k, math, math500, aime24, …")
    p.add_argument("--data", help="local data: a JSONL file or a directory such as ../shared/data")
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable (jsonl: question_field=, answer_field=, id_field=, grader=int)",
    )
    p.add_argument("-o", "--output", help="graded JSONL to write (default: SAMPLES.graded.jsonl)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--workers", type=int, help="verifier processes (default: number of cores)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per verification (default 5)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wiseft.grading import Grader
    from wiseft.grading.records import grade_records
    from wiseft.tasks import get_task

    console = Console(stderr=True)
    source = open_source(args)  # output checked before any work
    task = get_task(args.task, data=args.data, **parse_task_options(args.task_option))
    records = source.records()
    start = time.perf_counter()
    columns = [TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Grader(kind=task.grader, workers=args.workers, timeout=args.timeout) as grader:
        with Progress(*columns, console=console, transient=True) as bar:
            bar_task = bar.add_task("grade", total=len(records))
            graded = grade_records(
                records, task, grader, progress=lambda n: bar.update(bar_task, completed=n)
            )
    elapsed = time.perf_counter() - start
    written = source.write(graded)
    _summary_table(Console(), graded, grader, elapsed, written)
    return 0


def _summary_table(console, graded: list[dict], grader, elapsed: float, written: str) -> None:
    from rich.table import Table

    counts: dict[str, int] = {}
    for rec in graded:
        counts[rec["verdict"]] = counts.get(rec["verdict"], 0) + 1
    s = grader.stats
    table = Table(title=f"graded {len(graded)} samples → {written}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    for verdict in ("correct", "incorrect", "no_answer", "timeout"):
        n = counts.get(verdict, 0)
        table.add_row(verdict, f"{n} ({n / len(graded):.1%})")
    table.add_row("extraction rules", ", ".join(f"{k} {v}" for k, v in sorted(s.rules.items())) or "-")
    table.add_row("distinct (gold, answer) pairs", str(s.distinct_pairs))
    table.add_row("verifier calls", f"{s.verifier_calls} ({s.numeric} numeric, {s.string_equal} identical)")
    table.add_row("grader", grader.name)
    table.add_row("time", f"{elapsed:.1f} s ({len(graded) / max(elapsed, 1e-9):,.0f} samples/s)")
    console.print(table)
