"""The grade of one sample: what every grader returns (`Grader` for math and integers, the IFEval checkers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grade:
    """The grade of one sample; `reason` says why it is not correct (no answer, timeout, …)."""

    answer: str | None
    extraction: str | None
    verdict: str
    correct: bool
    answer_class: int
    reason: str | None = None
