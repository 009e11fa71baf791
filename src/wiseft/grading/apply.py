"""Grading sample records: `grade_records(records, task, grader)` adds the grade fields to each record.

The record schema itself lives in `wiseft.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wiseft.errors import GradingError
from wiseft.grading.thinking import split_thinking
from wiseft.records import check_record, check_unique


def grade_records(
    records: Sequence[dict],
    task: Any,
    grader: Any,
    progress: Callable[[int], None] | None = None,
    chunk: int = 4096,
) -> list[dict]:
    """New records with the grade fields added. Unknown problem ids are an error naming the id. When the
    grader reads answers after a thinking block (`grader.thinking`), records that do not say whether
    they closed one get `think_closed` from their text.

    Work goes in chunks of whole problems (so answer classes stay per problem) and `progress(n)` is
    called with the number of records done after each.
    """
    for i, rec in enumerate(records):
        check_record(rec, f"record {i + 1}")
    check_unique(records, "samples")
    thinking = getattr(grader, "thinking", None)  # (close tag, open tag) or None
    gold_of = {p.id: p.gold for p in task.problems}
    unknown = sorted({r["problem_id"] for r in records} - set(gold_of))
    if unknown:
        raise GradingError(
            f"problem id(s) {', '.join(map(repr, unknown[:5]))} are not in task {task.name} "
            f"({task.source or 'its data'}); grade with the task the samples were drawn from (--task/--data)"
        )
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault((rec.get("variant"), rec["problem_id"]), []).append(i)
    out: list[dict | None] = [None] * len(records)
    batch: list[int] = []
    done = 0

    def flush() -> None:
        nonlocal done
        items = [(gold_of[records[i]["problem_id"]], records[i]["completion"]) for i in batch]
        keys = [f"{records[i].get('variant')}\x00{records[i]['problem_id']}" for i in batch]
        for i, g in zip(batch, grader.grade(items, task=task, problem_ids=keys), strict=True):
            rec = dict(records[i])
            if thinking is not None and rec.get("think_closed") is None:  # drawn elsewhere: from the text
                rec["think_closed"] = split_thinking(rec["completion"], *thinking).closed
            rec.update(
                answer=g.answer,
                extraction=g.extraction,
                verdict=g.verdict,
                correct=g.correct,
                answer_class=g.answer_class,
                grader=grader.name,
                reason=g.reason,
            )
            out[i] = rec
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done)

    for idx in groups.values():
        batch.extend(idx)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return out  # type: ignore[return-value]
