"""Progress that still shows when output is not a terminal.

rich draws live bars only on a terminal; piped into a log (CI, `| tee`), a long run would print nothing
until its end. `LogLines` prints one plain line when a task starts, at each quarter, and when it ends —
only when the console is not a terminal, so it never doubles the live bars.
"""

from __future__ import annotations


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
