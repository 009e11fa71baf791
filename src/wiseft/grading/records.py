"""Sample records (the JSONL schema of `wiseft grade`, see docs/ARCHITECTURE.md) and their grading.

- `read_records(path)` / `write_records(path, records)`: JSONL in and (atomically) out, checked
  against the schema with errors naming the file, line and field;
- `grade_records(records, task, grader)`: adds answer, extraction, verdict, correct, answer_class,
  grader (and reason) to each record; answer classes are per (variant, problem);
- `problem_samples(records)` / `by_variant(records)`: graded records → `metrics.ProblemSamples`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wiseft.atomic import atomic_write_text
from wiseft.errors import GradingError
from wiseft.jsonl import iter_objects
from wiseft.metrics import ProblemSamples

REQUIRED = {"problem_id": str, "sample_idx": int, "completion": str}
OPTIONAL = {"n_tokens": int, "finish_reason": str, "variant": str, "score": float}
GRADE_FIELDS = ("answer", "extraction", "verdict", "correct", "answer_class", "grader", "reason")
FINISH_REASONS = ("stop", "length")


def check_record(rec: Any, where: str, graded: bool = False) -> dict:
    """Validate one record against the schema; raise GradingError naming `where` and the field."""
    if not isinstance(rec, dict):
        raise GradingError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for name, tp in REQUIRED.items():
        if name not in rec:
            raise GradingError(f"{where}: missing field {name!r} (required: {', '.join(REQUIRED)})")
        if not _is(rec[name], tp):
            raise GradingError(
                f"{where}: field {name!r} must be {tp.__name__}, got {type(rec[name]).__name__}"
            )
    for name, tp in OPTIONAL.items():
        if rec.get(name) is not None and not _is(rec[name], tp):
            raise GradingError(
                f"{where}: field {name!r} must be {tp.__name__}, got {type(rec[name]).__name__}"
            )
    if rec["sample_idx"] < 0:
        raise GradingError(f"{where}: field 'sample_idx' must be ≥ 0, got {rec['sample_idx']}")
    if rec.get("finish_reason") is not None and rec["finish_reason"] not in FINISH_REASONS:
        raise GradingError(
            f"{where}: field 'finish_reason' must be 'stop' or 'length', got {rec['finish_reason']!r}"
        )
    if graded:
        for name in ("verdict", "correct", "answer_class"):
            if name not in rec:
                raise GradingError(
                    f"{where}: missing field {name!r}; is this a graded file? run `wiseft grade` first"
                )
        if not isinstance(rec["correct"], bool) or not _is(rec["answer_class"], int):
            raise GradingError(
                f"{where}: fields 'correct' (bool) and 'answer_class' (int) have the wrong type"
            )
    return rec


def _is(value: Any, tp: type) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def read_records(path: str | os.PathLike, graded: bool = False) -> list[dict]:
    """Read and check a JSONL file of sample records."""
    path = Path(path)
    if not path.is_file():
        raise GradingError(f"samples file {path} does not exist")
    records = [check_record(rec, where, graded) for where, rec in iter_objects(path, GradingError)]
    if not records:
        raise GradingError(f"{path} holds no sample records")
    _check_unique(records, str(path))
    return records


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write records as JSONL, atomically (the file appears whole or not at all)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(path, text)


def _check_unique(records: Sequence[dict], where: str) -> None:
    seen: set[tuple] = set()
    for rec in records:
        key = (rec.get("variant"), rec["problem_id"], rec["sample_idx"])
        if key in seen:
            v = f" of variant {key[0]!r}" if key[0] is not None else ""
            raise GradingError(f"{where}: sample {key[2]} of problem {key[1]!r}{v} appears twice")
        seen.add(key)


def grade_records(
    records: Sequence[dict],
    task: Any,
    grader: Any,
    progress: Callable[[int], None] | None = None,
    chunk: int = 4096,
) -> list[dict]:
    """New records with the grade fields added. Unknown problem ids are an error naming the id.

    Work goes in chunks of whole problems (so answer classes stay per problem) and `progress(n)` is
    called with the number of records done after each.
    """
    for i, rec in enumerate(records):
        check_record(rec, f"record {i + 1}")
    _check_unique(records, "samples")
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


def by_variant(records: Sequence[dict]) -> dict[str | None, list[dict]]:
    """Graded records split by their `variant` field (None when absent), in first-seen order."""
    out: dict[str | None, list[dict]] = {}
    for rec in records:
        out.setdefault(rec.get("variant"), []).append(rec)
    return out


def problem_samples(records: Sequence[dict], where: str = "graded records") -> list[ProblemSamples]:
    """One `ProblemSamples` per problem (first-seen order), samples sorted by sample_idx.

    Scores go in only when every sample of every problem has one; token counts likewise; a sample is
    truncated when its finish_reason is "length".
    """
    variants = {r.get("variant") for r in records}
    if len(variants) > 1:
        raise GradingError(
            f"{where} hold {len(variants)} variants ({', '.join(sorted(map(str, variants))[:4])}); "
            "split them with by_variant() or choose one with --variant"
        )
    by_problem: dict[str, list[dict]] = {}
    for i, rec in enumerate(records):
        check_record(rec, f"{where} record {i + 1}", graded=True)
        by_problem.setdefault(rec["problem_id"], []).append(rec)
    if not by_problem:
        raise GradingError(f"{where}: no samples to score")
    all_scores = all(r.get("score") is not None for r in records)
    all_tokens = all(r.get("n_tokens") is not None for r in records)
    all_finish = all(r.get("finish_reason") is not None for r in records)
    out = []
    for pid, recs in by_problem.items():
        recs = sorted(recs, key=lambda r: r["sample_idx"])
        out.append(
            ProblemSamples(
                correct=np.array([r["correct"] for r in recs], dtype=bool),
                classes=np.array([r["answer_class"] for r in recs], dtype=np.int64),
                scores=np.array([r["score"] for r in recs], dtype=np.float64) if all_scores else None,
                n_tokens=np.array([r["n_tokens"] for r in recs], dtype=np.int64) if all_tokens else None,
                truncated=np.array([r["finish_reason"] == "length" for r in recs]) if all_finish else None,
                problem_id=pid,
            )
        )
    return out
