"""The seeded validation/test split of a task's problems (the validation part chooses a variant, the test
part reports it). Its own module because it draws with numpy, which the grading path (`wiseft grade`
imports `wiseft.tasks`) does not load."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wiseft.errors import TaskError
from wiseft.tasks.base import Problem


def split_problems(
    problems: Sequence[Problem], val_fraction: float, seed: int
) -> tuple[list[Problem], list[Problem]]:
    """A seeded random split into (validation, test), each in the original order.

    The validation part chooses δ; the test part reports it, so the choice is not graded on itself.
    """
    if not 0.0 < val_fraction < 1.0:
        raise TaskError(f"--val-fraction must lie strictly between 0 and 1, got {val_fraction}")
    n = len(problems)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise TaskError(
            f"--val-fraction {val_fraction} of {n} problems leaves an empty validation or test split; "
            "use more problems or another fraction"
        )
    chosen = np.random.default_rng(seed).permutation(n)[:n_val]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return [p for p, m in zip(problems, mask, strict=True) if m], [
        p for p, m in zip(problems, mask, strict=True) if not m
    ]
