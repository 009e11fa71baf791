"""The sample record: the one schema every stage reads and writes (docs/ARCHITECTURE.md, "Sample record").

A sample record is one JSON object per sample (`problem_id`, `sample_idx`, `completion`, optional
`n_tokens`, `finish_reason`, `variant`, `score` with the `verifier` id and `vote_transform` that go with
it; after grading also the `GRADE_FIELDS`; a store export
adds the problem's `PROBLEM_FIELDS`: `prompt`, `gold` and `meta` where the store knows them). This module is at
the bottom of the package: the store, the grader, the metrics and the CLI all read records through it.

- `check_record` / `read_records` / `write_records`: validation (errors name the file, line and field),
  JSONL in and (atomically) out;
- `ProblemSamples`: the graded samples of one problem as arrays, the input of `wiseft.metrics`;
- `to_problem_samples(records)` / `by_variant(records)`: graded records → `ProblemSamples`;
  `columns_to_problem_samples`: the same from columns, checked alike (the sample store's path).

numpy is imported inside the functions that build the arrays: grading (`wiseft grade`) reads and writes
records through this module and the store but never builds arrays, and starts without numpy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiseft.atomic import atomic_write_text
from wiseft.errors import GradingError, MetricError
from wiseft.jsonl import iter_objects

if TYPE_CHECKING:
    import numpy as np

REQUIRED = {"problem_id": str, "sample_idx": int, "completion": str}
OPTIONAL = {"n_tokens": int, "finish_reason": str, "variant": str, "score": float, "verifier": str,
            "vote_transform": str, "prompt": str, "gold": str, "meta": dict, "think_closed": bool,
            "thinking_tokens": int}  # fmt: skip
# Problem fields a record may carry (in `meta`) for breakdowns, e.g. MATH's subject and level: `score --group-by`.
GROUP_FIELDS = ("subject", "level", "type")
SAMPLE_FIELDS = ("problem_id", "sample_idx", "completion", "n_tokens", "finish_reason", "score")
PROBLEM_FIELDS = ("prompt", "gold", "meta")  # the problem's, repeated on each of its samples
GRADE_FIELDS = ("answer", "extraction", "verdict", "correct", "answer_class", "grader", "reason")
FINISH_REASONS = ("stop", "length")
GRADED_TYPES = "fields 'correct' (bool) and 'answer_class' (int) have the wrong type"


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
            raise GradingError(f"{where}: {GRADED_TYPES}")
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
    check_unique(records, str(path))
    return records


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write records as JSONL, atomically (the file appears whole or not at all)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(path, text)


def check_unique(records: Sequence[dict], where: str) -> None:
    seen: set[tuple] = set()
    for rec in records:
        key = (rec.get("variant"), rec["problem_id"], rec["sample_idx"])
        if key in seen:
            v = f" of variant {key[0]!r}" if key[0] is not None else ""
            raise GradingError(f"{where}: sample {key[2]} of problem {key[1]!r}{v} appears twice")
        seen.add(key)


@dataclass(frozen=True)
class ProblemSamples:
    """The graded samples of one problem (arrays of length n; converted to numpy on construction)."""

    correct: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None
    n_tokens: np.ndarray | None = None
    truncated: np.ndarray | None = None
    problem_id: str | None = None
    think_closed: np.ndarray | None = None  # whether each sample closed a thinking block
    thinking_tokens: np.ndarray | None = None  # tokens of each sample's thinking (closing tag included)

    def __post_init__(self) -> None:
        import numpy as np

        correct = np.asarray(self.correct, dtype=bool).reshape(-1)
        n = correct.shape[0]
        object.__setattr__(self, "correct", correct)
        object.__setattr__(self, "classes", _vector(self.classes, np.int64, n, "classes", self.problem_id))
        optional = (("scores", np.float64), ("n_tokens", np.int64), ("truncated", bool), ("think_closed", bool),
                    ("thinking_tokens", np.int64))  # fmt: skip
        for name, dtype in optional:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _vector(value, dtype, n, name, self.problem_id))
        if self.scores is not None and not np.all(np.isfinite(self.scores)):
            raise MetricError(
                f"problem {self.problem_id or '?'}: scores must be finite numbers (found NaN/inf)"
            )
        if np.any((self.classes < 0) & self.correct):
            raise MetricError(
                f"problem {self.problem_id or '?'}: a sample is marked correct but has no answer class (−1)"
            )

    @property
    def n(self) -> int:
        return int(self.correct.shape[0])

    @property
    def c(self) -> int:
        return int(self.correct.sum())


def _vector(value, dtype, n: int, name: str, pid: str | None) -> np.ndarray:
    import numpy as np

    arr = np.asarray(value, dtype=dtype).reshape(-1)
    if arr.shape[0] != n:
        raise MetricError(
            f"problem {pid or '?'}: field {name!r} has {arr.shape[0]} entries but there are {n} samples"
        )
    return arr


def by_variant(records: Sequence[dict]) -> dict[str | None, list[dict]]:
    """Graded records split by their `variant` field (None when absent), in first-seen order."""
    out: dict[str | None, list[dict]] = {}
    for rec in records:
        out.setdefault(rec.get("variant"), []).append(rec)
    return out


def choose_scores(
    records: Sequence[dict], verifier: str | None, where: str
) -> tuple[list[dict], str | None, str | None]:
    """The records with the scores of one verifier only: (records, its id, its vote transform).

    `verifier` names it (an id; records scored by others lose their score), else every scored record
    must come from the same verifier (or none name one): scores of two verifiers are never mixed in one
    Best@k. The id and transform are None where the records do not say (scores of unknown origin)."""
    scored = [r for r in records if r.get("score") is not None]
    ids = list(dict.fromkeys(r.get("verifier") for r in scored))
    if verifier is not None:
        if verifier not in ids:
            raise MetricError(
                f"--verifier {verifier}: no sample of {where} is scored by it; the scores there come from: "
                f"{_verifier_names(ids)}"
            )
        records = [r if r.get("verifier") == verifier else _unscored(r) for r in records]
        scored, ids = [r for r in records if r.get("score") is not None], [verifier]
    elif len(ids) > 1:
        raise MetricError(
            f"{where} hold scores of {len(ids)} verifiers ({_verifier_names(ids)}); Best@k and weighted maj@k "
            "read one verifier's scores: name it with --verifier ID"
        )
    transforms = list(dict.fromkeys(r.get("vote_transform") for r in scored))
    if len(transforms) > 1:
        raise MetricError(
            f"{where}: the scores of verifier {ids[0]} name {len(transforms)} vote transforms "
            f"({', '.join(map(str, transforms))}); a verifier has one"
        )
    return list(records), (ids[0] if ids else None), (transforms[0] if transforms else None)


def _verifier_names(ids: Sequence[str | None]) -> str:
    return ", ".join("(no verifier named)" if i is None else i for i in ids) or "no verifier"


def _unscored(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("score", "verifier", "vote_transform")}


def to_problem_samples(records: Sequence[dict], where: str = "graded records") -> list[ProblemSamples]:
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
    all_closed = all(r.get("think_closed") is not None for r in records)
    all_thinking = all_closed and all(r.get("thinking_tokens") is not None for r in records)
    import numpy as np

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
                think_closed=np.array([r["think_closed"] for r in recs], dtype=bool) if all_closed else None,
                thinking_tokens=np.array([r["thinking_tokens"] for r in recs], dtype=np.int64)
                if all_thinking
                else None,
            )
        )
    return out


# The columns of `columns_to_problem_samples`, with the types `check_record` asks of each (None: optional).
SAMPLE_COLUMNS = {"problem_id": (str, False), "sample_idx": (int, False), "completion": (str, False),
                  "n_tokens": (int, True), "finish_reason": (str, True), "score": (float, True),
                  "correct": (bool, False), "answer_class": (int, False), "think_closed": (bool, True),
                  "thinking_tokens": (int, True)}  # fmt: skip


def columns_to_problem_samples(
    columns: dict[str, Sequence], groups: Sequence[tuple[str, int, int]], where: str
) -> list[ProblemSamples]:
    """`to_problem_samples` of graded samples given as columns (the store's path: no dict per sample).

    `columns` maps each of `SAMPLE_COLUMNS` to one value per sample, the samples of a problem consecutive
    and sorted by sample_idx; `groups` lists (problem_id, start, stop) in output order. The values are
    checked as `check_record(graded=True)` checks a record, and the first bad sample is named the same
    way ("<where> record <i>: field ..."); `correct` and `think_closed` are read as truth values."""
    _check_columns(columns, where)
    import numpy as np

    n = len(columns["problem_id"])

    def complete(name: str) -> bool:
        return all(v is not None for v in columns[name])

    def array(name: str, dtype, convert=None):
        values = columns[name] if convert is None else map(convert, columns[name])
        return np.fromiter(values, dtype=dtype, count=n)

    correct, classes = array("correct", bool, bool), array("answer_class", np.int64)
    scores = array("score", np.float64) if complete("score") else None
    n_tokens = array("n_tokens", np.int64) if complete("n_tokens") else None
    finish = columns["finish_reason"]
    truncated = (
        np.fromiter((f == "length" for f in finish), bool, count=n) if complete("finish_reason") else None
    )
    closed = array("think_closed", bool, bool) if complete("think_closed") else None
    thinking = (
        array("thinking_tokens", np.int64) if closed is not None and complete("thinking_tokens") else None
    )

    def part(arr, a: int, b: int):
        return None if arr is None else arr[a:b]

    return [
        ProblemSamples(
            correct=correct[a:b],
            classes=classes[a:b],
            scores=part(scores, a, b),
            n_tokens=part(n_tokens, a, b),
            truncated=part(truncated, a, b),
            problem_id=pid,
            think_closed=part(closed, a, b),
            thinking_tokens=part(thinking, a, b),
        )  # fmt: skip
        for pid, a, b in groups
    ]


def _check_columns(columns: dict[str, Sequence], where: str) -> None:
    """GradingError naming the first sample (in order) with a value `check_record` would refuse, and of
    that sample the first check `check_record` makes; each check costs one pass over a column."""
    first: list[tuple[int, int, str]] = []  # (sample, check, message) of each check's first refusal

    def refuse(check: int, name: str, bad, message) -> None:
        i = next((i for i, v in enumerate(columns[name]) if bad(v)), None)
        if i is not None:
            first.append((i, check, message(columns[name][i])))

    names = [n for n in (*REQUIRED, *OPTIONAL, "answer_class") if n in SAMPLE_COLUMNS]
    for check, name in enumerate(names):  # check_record's order: types (required, optional), then graded
        tp, optional = SAMPLE_COLUMNS[name]
        allowed = {float: {int, float}}.get(tp, {tp}) | ({type(None)} if optional else set())
        if tp is not bool and not set(map(type, columns[name])) <= allowed:
            graded = name == "answer_class"  # check_record's message for the graded fields
            refuse(99 if graded else check, name, lambda v, a=allowed: type(v) not in a,
                   (lambda v: GRADED_TYPES) if graded
                   else lambda v, n=name, t=tp: f"field {n!r} must be {t.__name__}, got {type(v).__name__}")  # fmt: skip
    refuse(
        97,
        "sample_idx",
        lambda v: type(v) is int and v < 0,
        lambda v: f"field 'sample_idx' must be ≥ 0, got {v}",
    )
    if not set(columns["finish_reason"]) <= {None, *FINISH_REASONS}:
        refuse(98, "finish_reason", lambda v: type(v) is str and v not in FINISH_REASONS,
               lambda v: f"field 'finish_reason' must be 'stop' or 'length', got {v!r}")  # fmt: skip
    if first:
        i, _, message = min(first)
        raise GradingError(f"{where} record {i + 1}: {message}")


def sample_records(
    problem_ids: Sequence[str], completions: Sequence[Sequence[Any]], annotate: Any = None
) -> list[dict]:
    """Sample records of freshly drawn completions (objects with `text`, `n_tokens`, `finish_reason`),
    one list of n per problem, in problem order; `annotate(problem_id, completion) -> dict` adds fields
    (the thinking counts)."""
    out = []
    for pid, row in zip(problem_ids, completions, strict=True):
        for i, c in enumerate(row):
            rec = {"problem_id": pid, "sample_idx": i, "completion": c.text, "n_tokens": c.n_tokens,
                   "finish_reason": c.finish_reason}  # fmt: skip
            if annotate is not None:
                rec.update(annotate(pid, c))
            out.append(rec)
    return out


def group_value(record: dict, field: str):
    """A record's value of a grouping field: from its problem `meta`, else a top-level field; None."""
    meta = record.get("meta")
    if isinstance(meta, dict) and meta.get(field) is not None:
        return meta[field]
    return record.get(field)
