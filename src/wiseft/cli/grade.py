"""`wiseft grade SAMPLES.jsonl --task T`: add extracted answer, verdict and answer class to each sample.

Samples come from a *source* and graded records go back to it: a JSONL file (`JsonlSource`, graded
records written to another JSONL file) or a sample store (`StoreSource`, grades written into the store
beside its samples). `open_source` picks one from the path.
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


class StoreSource:
    """The samples of every variant in a sample store; grades are written back into the store.

    Records carry "#<variant id>" in "variant" while they are graded (names need not be unique), and the
    variant's own task is used unless --task names one.
    """

    def __init__(self, path: str, output: str | None):
        from wiseft.store import SampleStore

        if output:
            raise OutputError(
                f"-o/--output does not apply to a sample store ({path}): grades are written into the store; "
                "use `wiseft store export` for a JSONL copy"
            )
        self.path = Path(path)
        self.store = SampleStore(self.path)
        self.variants = {v.id: v for v in self.store.variants()}

    def task_names(self) -> dict[str, str]:
        return {f"#{vid}": v.task for vid, v in self.variants.items()}

    def records(self) -> list[dict]:
        out = []
        for vid in self.variants:
            for rec in self.store.records(vid):
                out.append({**{k: v for k, v in rec.items() if k not in GRADE_KEYS}, "variant": f"#{vid}"})
        return out

    def write(self, graded: list[dict]) -> str:
        by_variant: dict[int, list[dict]] = {}
        for rec in graded:
            by_variant.setdefault(int(rec["variant"][1:]), []).append(rec)
        for vid, recs in by_variant.items():
            self.store.add_grades(vid, recs)
        self.store.close()
        return str(self.path)


GRADE_KEYS = ("answer", "extraction", "verdict", "correct", "answer_class", "grader", "reason")


def open_source(args) -> JsonlSource | StoreSource:
    from wiseft.store import is_store

    if is_store(args.samples):
        return StoreSource(args.samples, args.output)
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
    p.add_argument(
        "samples", help="JSONL of sample records (problem_id, sample_idx, completion, …) or a sample store"
    )
    p.add_argument(
        "--task",
        help="task the samples answer: gsm8k, math, math500, aime24, … (required for JSONL; a store's "
        "variants know their task)",
    )
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
    options = parse_task_options(args.task_option)
    records = source.records()
    # Which task each record belongs to: --task for all, else (a store) each variant's own task.
    if args.task:
        task_of = {None: args.task}
    elif isinstance(source, StoreSource):
        task_of = source.task_names()
    else:
        raise ConfigError("--task is required when grading a JSONL file (e.g. --task gsm8k --data PATH)")
    groups: dict[str, list[dict]] = {}
    for rec in records:
        name = task_of.get(rec.get("variant"), task_of.get(None))
        groups.setdefault(name, []).append(rec)
    start = time.perf_counter()
    columns = [TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    graded: list[dict] = []
    with Progress(*columns, console=console, transient=True) as bar:
        bar_task = bar.add_task("grade", total=len(records))
        for name, recs in groups.items():
            task = get_task(name, data=args.data, **options)
            done = len(graded)
            with Grader(kind=task.grader, workers=args.workers, timeout=args.timeout) as grader:
                graded += grade_records(
                    recs, task, grader, progress=lambda n, d=done: bar.update(bar_task, completed=d + n)
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
