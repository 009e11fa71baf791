"""Grading sample records: `grade_records(records, task, grader)` adds the grade fields to each record.

The record schema itself lives in `wiseft.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
    gold_of = _golds(records, task)
    thinking = getattr(grader, "thinking", None)  # (close tag, open tag) or None
    out: list[dict | None] = [None] * len(records)
    done = 0
    for batch in _problem_chunks(records, chunk):
        for i, rec in zip(batch, _graded(records, batch, gold_of, task, grader, thinking), strict=True):
            out[i] = rec
        done += len(batch)
        if progress is not None:
            progress(done)
    return out  # type: ignore[return-value]


def _golds(records: Sequence[dict], task: Any) -> dict[str, str]:
    """The task's gold answer by problem id, once the records are checked: valid, unique, and every
    problem id one of the task's."""
    for i, rec in enumerate(records):
        check_record(rec, f"record {i + 1}")
    check_unique(records, "samples")
    gold_of = {p.id: p.gold for p in task.problems}
    unknown = sorted({r["problem_id"] for r in records} - set(gold_of))
    if unknown:
        raise GradingError(
            f"problem id(s) {', '.join(map(repr, unknown[:5]))} are not in task {task.name} "
            f"({task.source or 'its data'}); grade with the task the samples were drawn from (--task/--data)"
        )
    return gold_of


def _problem_chunks(records: Sequence[dict], chunk: int) -> Iterator[list[int]]:
    """Indices of `records` in chunks of whole problems (of one variant each), first-seen order; a chunk
    ends once it holds at least `chunk` records."""
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault((rec.get("variant"), rec["problem_id"]), []).append(i)
    batch: list[int] = []
    for idx in groups.values():
        batch.extend(idx)
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _graded(
    records: Sequence[dict], batch: list[int], gold_of: dict[str, str], task: Any, grader: Any, thinking
) -> list[dict]:
    """New records of `records[batch]` with the grade fields (and `think_closed`, from the text, where the
    grader reads after a thinking block and the record does not say)."""
    items = [(gold_of[records[i]["problem_id"]], records[i]["completion"]) for i in batch]
    keys = [f"{records[i].get('variant')}\x00{records[i]['problem_id']}" for i in batch]
    graded = []
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
        graded.append(rec)
    return graded
