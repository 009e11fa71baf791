"""Strict and loose following of a prompt's instructions, and IFEval's four accuracies with intervals.

Exactly as the reference (google-research ``evaluation_lib.py``) defines them:

- **strict**: an instruction is followed when the response is not blank and its checker accepts the
  response as it is;
- **loose**: it is followed when the checker accepts any non-blank one of eight variants: the response;
  the response with every ``*`` removed; the response less its first line, less its last line, less both
  (each then stripped); and those three with every ``*`` removed;
- **prompt level**: a prompt counts when all its instructions are followed;
  **instruction level**: followed instructions over all instructions.

The four accuracies with intervals over graded records are `wiseft.ifeval_metrics.ifeval_scores`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wiseft.errors import GradingError
from wiseft.tasks.ifeval.arguments import validate_kwargs
from wiseft.tasks.ifeval.checkers import INSTRUCTIONS


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
