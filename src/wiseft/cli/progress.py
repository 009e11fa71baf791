"""Consoles, and progress that still shows when output is not a terminal.

`stdout_console()` / `stderr_console()`: rich consoles for tables and messages. On a terminal they take
its width; piped into a log they are `PIPED_WIDTH` columns wide, so a table keeps every column rather
than being squeezed to rich's default of 80.

rich draws live bars only on a terminal; piped into a log (CI, `| tee`), a long run would print nothing
until its end. `LogLines` prints one plain line when a task starts, at each quarter, when it ends, and
at least every `heartbeat` seconds in between (a stage whose total is a ceiling, such as the toy pretraining's
3 × 1,600 steps that its gate ends near 900, would otherwise go quiet for minutes) — only when the console is
not a terminal, so it never doubles the live bars.

`ProgressView`: the evaluating commands' progress callback, one bar per (variant, stage).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

PIPED_WIDTH = 200


def stdout_console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=PIPED_WIDTH)


class LogLines:
    def __init__(
        self, console, marks: int = 4, heartbeat: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.console = console
        self.marks = marks
        self.heartbeat = heartbeat
        self.clock = clock
        self.last: dict[object, tuple[int, float]] = {}

    def update(self, key: object, label: str, done: int, total: int, detail: str = "") -> None:
        if self.console.is_terminal:
            return
        mark = self.marks if not total else min(self.marks, done * self.marks // total)
        now = self.clock()
        last = self.last.get(key)
        if last is not None and last[0] == mark and now - last[1] < self.heartbeat:
            return
        self.last[key] = (mark, now)
        extra = f"  {detail}" if detail else ""
        self.console.print(f"{label}: {done}/{total}{extra}", highlight=False)


class ProgressView:
    """A rich progress display with one bar per (variant, stage): the library's progress callback.
    transformers' own per-load bars are switched off for the command (they would interleave)."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False, disable=not console.is_terminal,
        )  # fmt: skip
        self.tasks: dict[tuple[str, str], Any] = {}
        self.lines = LogLines(console)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, variant: str, stage: str, done: int, total: int, detail: str = "") -> None:
        """One bar per (variant, stage); `detail` (a Ray actor's throughput, the queue) follows the label."""
        key = (variant, stage)
        verb = {"sample": "sampling", "grade": "grading"}.get(stage, stage)
        label = f"{verb} {variant}"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(label, total=total)
        text = f"{label}: {detail}" if detail else label
        self.progress.update(self.tasks[key], completed=done, total=total, description=text)
        self.lines.update(key, label, done, total, detail)
