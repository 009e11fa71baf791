"""`wiseft grade SAMPLES.jsonl --task T`: add extracted answer, verdict and answer class to each sample.

SAMPLES is a JSONL file of sample records (graded records go to another JSONL file) or a sample store
(grades go back into the store, each variant graded with its own task unless --task names one).
"""

from __future__ import annotations

from wiseft.cli.progress import stderr_console, stdout_console
from wiseft.errors import ConfigError


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
        "record of SAMPLES.jsonl (schema in the README) and write the graded records as JSONL, or grade the "
        "samples of a sample store in place.",
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
    p.add_argument(
        "--problem-budget",
        type=float,
        default=120.0,
        help="seconds of verifier time per problem; answers beyond it get verdict timeout (default 120)",
    )
    p.add_argument(
        "--thinking-tag",
        default="</think>",
        help="closing tag of a thinking block: answers are read after it, and each sample records whether "
        "it closed one ('': off; default </think>, as wiseft eval)",
    )
    p.add_argument("--thinking-open-tag", default="<think>", help="opening tag of a thinking block")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wiseft.evaluate.offline import grade_file

    options = parse_task_options(args.task_option)
    columns = [TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    console = stderr_console()
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("grade", total=None)
        report = grade_file(
            args.samples, task=args.task, data=args.data, options=options, output=args.output,
            force=args.force, workers=args.workers, timeout=args.timeout, problem_budget=args.problem_budget,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            thinking=(args.thinking_tag, args.thinking_open_tag or None) if args.thinking_tag else None,
        )  # fmt: skip
    _summary_table(stdout_console(), report)
    return 0


def _summary_table(console, report) -> None:
    from rich.table import Table

    counts, s, n = report.verdicts(), report.stats, len(report.graded)
    table = Table(title=f"graded {n} samples → {report.written}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    for verdict in ("correct", "incorrect", "no_answer", "timeout"):
        k = counts.get(verdict, 0)
        table.add_row(verdict, f"{k} ({k / n:.1%})")
    table.add_row("extraction rules", ", ".join(f"{k} {v}" for k, v in sorted(s.rules.items())) or "-")
    table.add_row("distinct (gold, answer) pairs", str(s.distinct_pairs))
    table.add_row("verifier calls", f"{s.verifier_calls} ({s.numeric} numeric, {s.string_equal} identical)")
    table.add_row("grader" if len(report.graders) == 1 else "graders", ", ".join(report.graders))
    table.add_row("time", f"{report.seconds:.1f} s ({n / max(report.seconds, 1e-9):,.0f} samples/s)")
    console.print(table)
