"""Strict and loose following of a prompt's instructions, and IFEval's four accuracies with intervals.

Exactly as the reference (google-research ``evaluation_lib.py``) defines them:

- **strict**: an instruction is followed when the response is not blank and its checker accepts the
  response as it is;
- **loose**: it is followed when the checker accepts any non-blank one of eight variants: the response;
  the response with every ``*`` removed; the response less its first line, less its last line, less both
  (each then stripped); and those three with every ``*`` removed;
- **prompt level**: a prompt counts when all its instructions are followed;
  **instruction level**: followed instructions over all instructions.

`ifeval_scores(records, problems)` gives the four numbers over graded records, with bootstrap intervals
over prompts (several samples of one prompt are averaged first, as Mean@k does). The instruction-level
accuracy is a ratio of sums, Σ followed / Σ instructions; its interval comes from the per-prompt values
R + (f_p − R·n_p)·P/N (R the ratio, f_p and n_p a prompt's followed and total instructions, P prompts,
N instructions), whose mean is exactly R and whose bootstrap is the first-order (delta-method) bootstrap of
the ratio. All four share one set of resamples (`wiseft.metrics.bootstrap_ci`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wiseft.errors import GradingError
from wiseft.metrics import bootstrap_ci
from wiseft.tasks.ifeval.arguments import validate_kwargs
from wiseft.tasks.ifeval.checkers import INSTRUCTIONS

METRICS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")


@dataclass(frozen=True)
class Spec:
    """The instructions of one prompt: ids and their (checked) arguments, in the data's order."""

    ids: tuple[str, ...]
    kwargs: tuple[dict, ...]

    def to_json(self) -> str:
        """Canonical JSON, the task's gold string: the grader needs nothing else to verify a response."""
        return json.dumps(
            {"instruction_id_list": list(self.ids), "kwargs": list(self.kwargs)},
            sort_keys=True,
            ensure_ascii=False,
        )


def make_spec(ids: Any, kwargs: Any) -> Spec:
    """A checked `Spec`; ValueError (one line) when an id is unknown or an argument is missing or bad."""
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError("instruction_id_list must be a non-empty list of instruction ids")
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        n = len(kwargs) if isinstance(kwargs, list) else type(kwargs).__name__
        raise ValueError(f"kwargs must be a list with one object per instruction ({len(ids)}), got {n}")
    return Spec(tuple(ids), tuple(validate_kwargs(i, k) for i, k in zip(ids, kwargs, strict=True)))


def parse_spec(gold: str) -> Spec:
    """The `Spec` of a gold string written by `Spec.to_json` (GradingError when it is not one)."""
    try:
        data = json.loads(gold)
        return make_spec(data["instruction_id_list"], data["kwargs"])
    except (ValueError, TypeError, KeyError) as exc:
        raise GradingError(
            f"IFEval gold {gold[:60]!r} is not an instruction list ({exc}); grade with the ifeval task"
        ) from None


def loose_variants(response: str) -> tuple[str, ...]:
    """The eight texts the loose evaluation tries, in the reference's order."""
    lines = response.split("\n")
    less_first = "\n".join(lines[1:]).strip()
    less_last = "\n".join(lines[:-1]).strip()
    less_both = "\n".join(lines[1:-1]).strip()
    return (
        response,
        response.replace("*", ""),
        less_first,
        less_last,
        less_both,
        less_first.replace("*", ""),
        less_last.replace("*", ""),
        less_both.replace("*", ""),
    )


def follows(instruction_id: str, response: str, kwargs: dict) -> bool:
    """Strict verdict of one instruction: a blank response follows nothing."""
    return bool(response.strip()) and bool(INSTRUCTIONS[instruction_id].check(response, **kwargs))


@dataclass(frozen=True)
class Followed:
    """Per-instruction strict and loose verdicts of one response."""

    strict: tuple[bool, ...]
    loose: tuple[bool, ...]

    @property
    def prompt_strict(self) -> bool:
        return all(self.strict)

    @property
    def prompt_loose(self) -> bool:
        return all(self.loose)


def evaluate(response: str, spec: Spec) -> Followed:
    """Strict and loose verdicts of every instruction of `spec` on `response`."""
    variants = list(dict.fromkeys(loose_variants(response)))  # equal variants are checked once
    strict, loose = [], []
    for iid, kwargs in zip(spec.ids, spec.kwargs, strict=True):
        first = follows(iid, response, kwargs)
        strict.append(first)
        loose.append(first or any(follows(iid, v, kwargs) for v in variants[1:]))
    return Followed(tuple(strict), tuple(loose))


# ------------------------------------------------------------------------------------------- scores


def _verdicts(rec: dict, n: int, where: str) -> tuple[list[bool], list[bool]]:
    detail = rec.get("detail")
    if not isinstance(detail, dict):
        raise GradingError(f"{where}: no IFEval 'detail' field; grade the samples with the ifeval task first")
    strict, loose = detail.get("strict"), detail.get("loose")
    for name, v in (("strict", strict), ("loose", loose)):
        if not isinstance(v, list) or len(v) != n or not all(isinstance(x, bool) for x in v):
            raise GradingError(f"{where}: detail.{name} must be a list of {n} booleans (one per instruction)")
    return strict, loose  # type: ignore[return-value]


def _per_prompt(records: Sequence[dict], problems: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(P × 4 per-prompt means of [prompt strict, prompt loose, followed strict, followed loose], n_p)."""
    n_of = {p.id: len(p.meta["instruction_id_list"]) for p in problems}
    rows: dict[str, list[list[float]]] = {}
    variants = {r.get("variant") for r in records}
    if len(variants) > 1:
        raise GradingError(f"IFEval scores: records hold {len(variants)} variants; score one at a time")
    for i, rec in enumerate(records):
        where = f"record {i + 1}"
        pid = rec.get("problem_id")
        if pid not in n_of:
            raise GradingError(f"{where}: problem id {pid!r} is not an IFEval problem of this task")
        strict, loose = _verdicts(rec, n_of[pid], where)
        rows.setdefault(pid, []).append([all(strict), all(loose), sum(strict), sum(loose)])
    if not rows:
        raise GradingError("IFEval scores: no graded records")
    means = np.array([np.mean(np.array(r, dtype=np.float64), axis=0) for r in rows.values()])
    return means, np.array([n_of[pid] for pid in rows], dtype=np.float64)


def ifeval_scores(
    records: Sequence[dict],
    problems: Sequence[Any],
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict:
    """Prompt- and instruction-level strict and loose accuracy, each {"value", "lo", "hi"}, plus the
    counts of prompts, instructions and samples. `records` carry ``problem_id`` and ``detail`` =
    {"strict": [...], "loose": [...]} (one verdict per instruction); `problems` are the task's."""
    means, n_p = _per_prompt(records, problems)
    p, total = len(n_p), float(n_p.sum())
    columns, values = [means[:, 0], means[:, 1]], [means[:, 0].mean(), means[:, 1].mean()]
    for followed in (means[:, 2], means[:, 3]):
        ratio = followed.sum() / total
        columns.append(ratio + (followed - ratio * n_p) * p / total)
        values.append(ratio)  # the ratio itself, not the columns' mean (equal up to rounding)
    _, lo, hi = bootstrap_ci(np.column_stack(columns), seed=seed, n_boot=n_boot, level=level)
    out: dict = {
        name: {"value": float(m), "lo": float(a), "hi": float(b)}
        for name, m, a, b in zip(METRICS, values, lo, hi, strict=True)
    }
    out.update(prompts=p, instructions=int(total), samples=len(records))
    return out
