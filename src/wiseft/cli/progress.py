"""Consoles, and progress that still shows when output is not a terminal.

`stdout_console()` / `stderr_console()`: rich consoles for tables and messages. On a terminal they take
its width; piped into a log they are `PIPED_WIDTH` columns wide, so a table keeps every column rather
than being squeezed to rich's default of 80.


rich draws live bars only on a terminal; piped into a log (CI, `| tee`), a long run would print nothing
until its end. `LogLines` prints one plain line when a task starts, at each quarter, and when it ends —
only when the console is not a terminal, so it never doubles the live bars.
"""

from __future__ import annotations

import sys

PIPED_WIDTH = 200


def stdout_console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=PIPED_WIDTH)


class LogLines:
    def __init__(self, console, marks: int = 4):
        self.console = console
        self.marks = marks
        self.last: dict[object, int] = {}

    def update(self, key: object, label: str, done: int, total: int, detail: str = "") -> None:
        if self.console.is_terminal:
            return
        mark = self.marks if not total else min(self.marks, done * self.marks // total)
        if self.last.get(key) == mark:
            return
        self.last[key] = mark
        extra = f"  {detail}" if detail else ""
        self.console.print(f"{label}: {done}/{total}{extra}", highlight=False)
