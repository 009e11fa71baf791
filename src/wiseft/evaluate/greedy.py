"""The greedy soup of Wortsman et al. (2022, "Model soups", Algorithm 1), as a pure function of a scorer.

Given N candidates and `score(soup) -> Score` (the validation metric of the uniform average of the
candidates in `soup`, a tuple of candidate indices in ascending order):

1. every candidate is scored alone;
2. the candidates are ordered by that score, best first; equal scores keep the order the candidates were
   given in (a stable sort);
3. the soup starts as the first candidate; each following candidate is tried in that order: the uniform
   average of the soup and the candidate is scored, and the candidate is kept when that score is not worse
   than the soup's current score (`>=`: a tie keeps it, as the paper's Algorithm 1 does); otherwise the soup
   is left as it was.

The result is the final soup and everything that decided it (`SoupTrace`). Nothing here evaluates a model:
`evaluate.soup` scores each soup through an `EvalSession`, and the tests through a scripted table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

TIE_RULE = (
    "candidates are ordered by their own score, best first (equal scores keep the order given); a candidate "
    "is kept when the soup with it scores >= the soup without it (a tie keeps it)"
)


@dataclass(frozen=True)
class Score:
    """A validation metric's value, with its bootstrap interval when the scorer has one."""

    value: float
    lo: float | None = None
    hi: float | None = None

    def to_json(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class Step:
    """One candidate tried after the first: the soup it made, that soup's score, the score it had to match."""

    candidate: int
    soup: tuple[int, ...]
    score: Score
    before: Score
    kept: bool


@dataclass(frozen=True)
class SoupTrace:
    """What the greedy soup did: each candidate's own score (in the order given), the greedy order, every
    step after the first and the final soup (candidate indices in ascending order) with its score."""

    scores: tuple[Score, ...]
    order: tuple[int, ...]
    steps: tuple[Step, ...]
    kept: tuple[int, ...]
    final: Score

    def to_json(self, labels: Sequence[str]) -> dict:
        """The trace with candidates named by `labels` (their paths, in the order given)."""
        return {
            "tie_rule": TIE_RULE,
            "candidates": [
                {
                    "model": labels[i],
                    "score": s.to_json(),
                    "rank": self.order.index(i) + 1,
                    "kept": i in self.kept,
                }
                for i, s in enumerate(self.scores)
            ],
            "order": [labels[i] for i in self.order],
            "steps": [
                {
                    "added": labels[s.candidate],
                    "soup": [labels[i] for i in s.soup],
                    "score": s.score.to_json(),
                    "before": s.before.to_json(),
                    "kept": s.kept,
                }
                for s in self.steps
            ],
            "kept": [labels[i] for i in self.kept],
            "final": self.final.to_json(),
        }


Scorer = Callable[[tuple[int, ...]], Score]


def greedy_order(scores: Sequence[Score]) -> tuple[int, ...]:
    """Candidate indices by score, best first; equal scores in the order given."""
    return tuple(sorted(range(len(scores)), key=lambda i: -scores[i].value))


def greedy_soup(n: int, score: Scorer) -> SoupTrace:
    """The greedy soup of `n` candidates under `score` (see the module docstring)."""
    if n < 1:
        raise ValueError("a greedy soup needs at least one candidate")
    alone = tuple(score((i,)) for i in range(n))
    order = greedy_order(alone)
    kept, current, steps = (order[0],), alone[order[0]], []
    for i in order[1:]:
        trial = tuple(sorted((*kept, i)))
        result = score(trial)
        keep = result.value >= current.value
        steps.append(Step(i, trial, result, current, keep))
        if keep:
            kept, current = trial, result
    return SoupTrace(alone, order, tuple(steps), kept, current)
