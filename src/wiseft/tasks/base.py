"""Problems, tasks, the task registry and prompts (the validation split: `tasks/split.py`).

A `Task` knows its problems (id, question, gold answer), how to prompt for them, which kind of grader
verifies them (`grader_kind`: "math" = Math-Verify, "int" = exact integers), its stop strings, and optionally its own
answer extractor (`extract_answer(completion) -> (answer, rule) | None`), which then replaces the
generic rules (the toy task writes its numbers digit-reversed).

Tasks are made by factories registered with `@register_task(name)`; `get_task(name, data=None,
**options)` calls the factory. Built-in tasks live in `builtin.py`; the toy task registers itself from
`toy.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wiseft.errors import TaskError
from wiseft.prompts import make_prompter
from wiseft.records import GROUP_FIELDS

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PLAIN_TEMPLATE = "Problem: {question}\n" + INSTRUCTION + "\n\nSolution:"
GRADER_KINDS = ("math", "int", "ifeval")  # Math-Verify; exact integers; instruction checkers


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    gold: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def store_meta(self) -> dict:
        """What the sample store keeps of the problem beside its gold and prompt: the question, and the
        fields metrics break down by (`records.GROUP_FIELDS`, e.g. MATH's subject and level); not long
        reference solutions."""
        return {"question": self.question, **{k: self.meta[k] for k in GROUP_FIELDS if k in self.meta}}


@dataclass(frozen=True)
class Task:
    """A set of problems with their grader kind, prompts and stop strings."""

    name: str
    problems: list[Problem]
    grader_kind: str = "math"
    stop: tuple[str, ...] = ("\nProblem:",)
    template: str = PLAIN_TEMPLATE
    instruction: str = INSTRUCTION
    last_number_fallback: bool = False
    extract_answer: Callable[[str], tuple[str, str] | None] | None = None
    source: str = ""
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.grader_kind not in GRADER_KINDS:
            raise TaskError(
                f"task {self.name}: grader_kind must be one of {', '.join(GRADER_KINDS)}, not {self.grader_kind!r}"
            )
        if not self.problems:
            raise TaskError(f"task {self.name}: no problems were loaded from {self.source or 'its source'}")
        seen: set[str] = set()
        for p in self.problems:
            if p.id in seen:
                raise TaskError(f"task {self.name}: problem id {p.id!r} appears twice in {self.source}")
            seen.add(p.id)

    def __len__(self) -> int:
        return len(self.problems)

    def by_id(self) -> dict[str, Problem]:
        return {p.id: p for p in self.problems}

    def prompt(self, problem: Problem, style: str = "plain", tokenizer: Any = None) -> str:
        """The exact text given to the model in prompt `style` (`wiseft.prompts`; few-shot styles with
        their default number of worked examples)."""
        return make_prompter(style).render(problem.question, self.template, self.instruction, tokenizer)

    def subset(self, ids: Sequence[str]) -> Task:
        """The same task restricted to `ids` (in that order)."""
        index = self.by_id()
        missing = [i for i in ids if i not in index]
        if missing:
            raise TaskError(f"task {self.name}: unknown problem id(s) {', '.join(missing[:5])}")
        return _replace(self, problems=[index[i] for i in ids])


def _replace(task: Task, **changes) -> Task:
    return dataclasses.replace(task, **changes)


# ------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Task]] = {}
# Modules that register tasks when imported; get_task imports them on first use.
_PROVIDERS = ("wiseft.tasks.builtin", "wiseft.tasks.toy")


def register_task(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator: `@register_task("toy") def make(data=None, **options) -> Task`."""

    def deco(factory: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_providers(name: str | None = None) -> None:
    """Import the modules that register tasks: the built-ins always, `wiseft.tasks.<name>` when a task
    of that name is not registered yet (so asking for gsm8k never imports the toy world), or all."""
    modules = ["wiseft.tasks.builtin"]
    if name is None:
        modules += [m for m in _PROVIDERS if m not in modules]
    elif name not in _REGISTRY and name.isidentifier():
        modules.append(f"wiseft.tasks.{name}")
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def task_names() -> list[str]:
    _load_providers()
    return sorted(_REGISTRY)


def get_task(name: str, data: Any = None, **options: Any) -> Task:
    """Build task `name`, from local `data` (file or directory) or, when it is None, from the Hub."""
    _load_providers(name)
    if name not in _REGISTRY:
        raise TaskError(f"unknown task {name!r} (--task); known tasks: {', '.join(task_names())}")
    task = _REGISTRY[name](data=data, **options)
    if not isinstance(task, Task):
        raise TaskError(f"task factory for {name!r} returned {type(task).__name__}, not a Task")
    return task
