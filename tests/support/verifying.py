"""A graded sample store with problem prompts and questions, for `wiseft verify` tests (also built in a
subprocess by the kill test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wiseft.store import SampleStore
from wiseft.testing import ALPHABET

LETTERS = ALPHABET.replace("\n", "").replace("\\", "")


def problems(count: int) -> list[tuple]:
    """(problem_id, gold, prompt, meta): the prompt is what a sampler continued, the question the bare
    problem."""
    return [
        (f"p{i}", str(2 * i), f"q: {i}+{i}=", {"question": f"what is {i} plus {i}"}) for i in range(count)
    ]


def completion(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 24))))


def make_store(
    path: str | Path, variants: tuple[str, ...] = ("a", "b"), n_problems: int = 5, n: int = 4, seed: int = 0,
    graded: bool = True,
) -> Path:  # fmt: skip
    """A store of `variants` (task "toy"), n samples per problem; graded with answer classes 0..2, class
    0 correct on even problems."""
    rng = np.random.default_rng(seed)
    with SampleStore(path) as store:
        store.add_problems("toy", problems(n_problems))
        for name in variants:
            v = store.variant(name, "checkpoint", "toy", {"model": name}, {"n": n})
            recs = [
                {"problem_id": f"p{i}", "sample_idx": j, "completion": completion(rng), "n_tokens": 3,
                 "finish_reason": "stop"}
                for i in range(n_problems) for j in range(n)
            ]  # fmt: skip
            store.add_samples(v, recs)
            if graded:
                store.add_grades(v, [_grade(r, int(rng.integers(0, 3))) for r in recs])
    return Path(path)


def _grade(rec: dict, cls: int) -> dict:
    correct = cls == 0 and int(rec["problem_id"][1:]) % 2 == 0
    return {"problem_id": rec["problem_id"], "sample_idx": rec["sample_idx"], "answer": str(cls),
            "extraction": "last_number", "verdict": "correct" if correct else "incorrect", "correct": correct,
            "answer_class": cls, "grader": "test==1"}  # fmt: skip
