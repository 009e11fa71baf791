"""Verifiable rewards for RL: the project's grader decides, model text is never run.

`GraderReward(task, grader, format_reward)` scores completions against their problems' gold answers:
1 when the grader verifies the extracted final answer equal to the gold, else 0, plus `format_reward`
when a final answer could be extracted at all. Extraction is the task's own (or the generic rules);
verification goes through `Grader.verify_many`, so identical answers are verified once, verdicts are
cached for the life of the grader, and each Math-Verify call runs in a worker process under the
grader's timeout. A completion whose verification times out (or whose answer is too long to verify)
gets reward 0 and is counted in `RewardStats.timeouts`; it never stalls the run for longer than the
timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wiseft.errors import TaskError
from wiseft.grading.extract import normalise


@dataclass
class RewardStats:
    """Counts over one batch of completions."""

    completions: int = 0
    correct: int = 0
    answered: int = 0  # a final answer was extracted
    timeouts: int = 0  # verification timed out or the answer was too long to verify: reward 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Rewards:
    """Rewards of a batch in completion order, which of them are correct, and the counts."""

    values: list[float]
    correct: list[bool]
    stats: RewardStats


def check_golds(task_name: str, problems: Sequence[Any]) -> None:
    """Raise TaskError when there are no problems or one has no gold answer: RL needs one for each."""
    if not problems:
        raise TaskError(f"task {task_name}: no problems to train on; check --limit and the task's data")
    missing = [p.id for p in problems if not isinstance(p.gold, str) or not p.gold.strip()]
    if missing:
        raise TaskError(
            f"task {task_name}: {len(missing)} problem(s) have no gold answer (e.g. {', '.join(missing[:3])}); "
            "GRPO needs a verifiable answer for every problem: fix the answer field or drop those problems"
        )


class GraderReward:
    """Rewards from the grader: correct 1 else 0, plus `format_reward` for an extracted answer."""

    def __init__(self, task: Any, grader, format_reward: float = 0.0):
        self.task = task
        self.grader = grader
        self.format_reward = float(format_reward)

    def __call__(self, golds: Sequence[str], completions: Sequence[str]) -> Rewards:
        if len(golds) != len(completions):
            raise ValueError(f"{len(golds)} gold answers for {len(completions)} completions")
        stats = RewardStats(completions=len(completions))
        found = [self.grader.extract(text, self.task) for text in completions]
        pairs = [(normalise(g), normalise(f[0])) for g, f in zip(golds, found, strict=True) if f is not None]
        verdicts = iter(self.grader.verify_many(pairs, self.task) if pairs else [])
        values, correct = [], []
        for answer in found:
            verdict = next(verdicts) if answer is not None else "no_answer"
            stats.answered += answer is not None
            stats.correct += verdict == "correct"
            stats.timeouts += verdict == "timeout"
            correct.append(verdict == "correct")
            values.append(float(verdict == "correct") + (self.format_reward if answer is not None else 0.0))
        return Rewards(values, correct, stats)
