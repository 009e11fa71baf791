"""Grading samples that are already drawn (`wiseft grade`; scoring them is `evaluate.scoring`).

- `grade_file(samples, ...)`: grade a JSONL file of sample records (written to a graded JSONL) or a sample
  store (grades written back into it); samples are grouped by task, one grader per task, and the
  statistics of every grader are added up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wiseft.errors import ConfigError
from wiseft.grading import Grader, GradingStats
from wiseft.grading.apply import grade_records
from wiseft.grading.sources import open_samples
from wiseft.limits import DEFAULT_PROBLEM_BUDGET, check_budget, check_timeout, check_workers
from wiseft.tasks import get_task


@dataclass
class GradeReport:
    """What `grade_file` did: the graded records, where they went, the graders and their statistics."""

    graded: list[dict]
    written: str
    graders: list[str]
    stats: GradingStats = field(default_factory=GradingStats)
    seconds: float = 0.0

    def verdicts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self.graded:
            counts[rec["verdict"]] = counts.get(rec["verdict"], 0) + 1
        return counts


def grade_file(
    samples: str | Path, *, task: str | None = None, data: str | None = None, options: dict | None = None,
    output: str | Path | None = None, force: bool = False, workers: int | None = None, timeout: float = 5.0,
    problem_budget: float = DEFAULT_PROBLEM_BUDGET, progress: Callable[[int, int], None] | None = None,
    thinking: tuple[str, str | None] | None = None,
) -> GradeReport:  # fmt: skip
    """Grade every sample of `samples` (JSONL or store) and write the grades; `progress(done, total)`.
    `thinking` (close tag, open tag): answers are read after the thinking block, as `wiseft eval` does."""
    check_timeout(timeout)
    check_workers(workers)
    check_budget(problem_budget)
    source = open_samples(samples, output, force)  # the output is checked before any work
    try:
        records = source.records()
        groups: dict[str, list[dict]] = {}
        for rec in records:
            name = task or source.task_of(rec)
            if name is None:
                raise ConfigError(
                    "--task is required when grading a JSONL file (e.g. --task gsm8k --data PATH)"
                )
            groups.setdefault(name, []).append(rec)
        start = time.perf_counter()
        report = GradeReport([], "", [])
        for name, recs in groups.items():
            the_task = get_task(name, data=data, **(options or {}))
            done = len(report.graded)
            tick = (lambda n, d=done: progress(d + n, len(records))) if progress else None
            source.record_problems(name, [(p.id, p.gold, None, p.store_meta()) for p in the_task.problems])
            with Grader(the_task.grader_kind, workers, timeout, problem_budget=problem_budget,
                        thinking=thinking) as grader:  # fmt: skip
                report.graded += grade_records(recs, the_task, grader, progress=tick)
            report.stats.add(grader.stats)
            report.graders.append(grader.name)
        report.seconds = time.perf_counter() - start
        report.written = source.write(report.graded)
        return report
    finally:
        source.close()
