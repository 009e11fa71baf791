"""The answer classes of one problem while they are built (majority vote and distinct-answer counts): all
answers verified correct form the gold's class; each other answer joins the first class whose
representative it matches, or opens its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wiseft.grading.pool import BUDGET, TIMEOUT

MAX_ANSWER_CHARS = 5000  # longer "answers" (or golds) are not sent to the verifier: verdict "timeout"


@dataclass
class AnswerClasses:
    """The answer classes of one problem while they are built: each answer's representative."""

    group: Any
    rep_of: dict[str, str]
    reps: list[str]  # representatives of the wrong-answer classes, compared with each new answer
    pending: list[str]  # answers not placed yet, in order of first appearance

    @classmethod
    def start(cls, group: Any, distinct: list[str], verdicts: dict[str, str]) -> AnswerClasses:
        st = cls(group, {}, [], [])
        gold_rep = None
        for f in distinct:
            if verdicts.get(f) == "correct":
                gold_rep = gold_rep or f
                st.rep_of[f] = gold_rep
            elif verdicts.get(f) in (TIMEOUT, BUDGET) or len(f) > MAX_ANSWER_CHARS:
                st.rep_of[f] = f  # unverifiable: alone (comparing it would time out again)
        st.pending = [f for f in distinct if f not in st.rep_of]
        return st

    def alone(self, answers: list[str]) -> None:
        for f in answers:
            self.rep_of[f] = f
        self.pending = []

    def place(self, f: str, match: str | None, represent: bool) -> None:
        """`f` joins `match`'s class, or opens its own; it represents that class in later comparisons
        only when all its comparisons gave a verdict (one that timed out would likely time out again)."""
        self.rep_of[f] = match or f
        if match is None and represent:
            self.reps.append(f)

    def numbered(self, forms: list[str | None]) -> list[int]:
        numbering: dict[str, int] = {}
        classes = []
        for f in forms:
            if f is None:
                classes.append(-1)
                continue
            rep = self.rep_of[f]
            if rep not in numbering:
                numbering[rep] = len(numbering)
            classes.append(numbering[rep])
        return classes
