"""The toy task of the demo as a task of the registry: `get_task("toy", seed=5, split="test")`.

Problems, prompts and gold answers come from `wiseft.train.toy` (the generator); this module only
presents them as a `Task`: the prompt is the problem text itself (e.g. ``32+85+19+71=``), the grader is
exact integer comparison ("int"), generation stops at the end marker ``$``, and the answer is read by the
task's own extractor (the last partial sum, un-reversed), since the generic rules would read the digits
backwards.
"""

from __future__ import annotations

from wiseft.errors import TaskError
from wiseft.tasks.base import Problem, Task, register_task
from wiseft.train import toy as world

SPLITS = ("test", "sft")


def extract_answer(completion: str) -> tuple[str, str] | None:
    """(answer, rule) for the grader: the last partial sum of the completion, in ordinary digit order."""
    answer = world.extract_answer(completion)
    return None if answer is None else (answer, "toy-last-partial-sum")


def problems_of(split: world.ToySplits, which: str = "test") -> list[Problem]:
    if which not in SPLITS:
        raise TaskError(f"toy task: split must be one of {', '.join(SPLITS)}, got {which!r}")
    source = split.test if which == "test" else split.sft
    return [
        Problem(
            id=p.id,
            question=p.prompt,
            gold=p.answer,
            meta={"numbers": list(p.numbers), "completion": p.completion},
        )
        for p in source
    ]


@register_task("toy")
def make_toy_task(
    data=None, seed: int = 5, n_sft: int = 32, n_test: int = 400, split: str = "test", **options
) -> Task:
    """The toy task; `seed`, `n_sft`, `n_test` fix the problems (as in `ToyRecipe`), `split` picks them."""
    if data is not None:
        raise TaskError("toy task: problems are generated from --seed; it takes no data file")
    if options:
        raise TaskError(
            f"toy task: unknown option(s) {', '.join(sorted(options))}; known: seed, n_sft, n_test, split"
        )
    splits = world.make_splits(int(seed), n_sft=int(n_sft), n_test=int(n_test))
    return Task(
        name="toy",
        problems=problems_of(splits, split),
        grader="int",
        stop=(world.END,),
        template="{question}",
        instruction="",
        extract_answer=extract_answer,
        source=f"toy generator (seed {seed}, {n_sft} SFT / {n_test} test problems)",
        options={"seed": int(seed), "n_sft": int(n_sft), "n_test": int(n_test), "split": split},
    )
