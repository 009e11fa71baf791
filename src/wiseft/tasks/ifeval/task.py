"""The `ifeval` task: IFEval's prompts, each with instructions that a program verifies (no gold answer).

Data: a JSONL file (or a directory holding ``ifeval/test.jsonl`` or ``test.jsonl``, or $WISEFT_DATA) of
the reference's format, one object per line: ``key``, ``prompt``, ``instruction_id_list`` and ``kwargs``
(one argument object per instruction; keys whose value is null are ignored, so the Hugging Face copy
loads too). Every instruction id must be one the verifiers know and every argument must be present and
valid; otherwise loading stops with a `TaskError` that names the file, the line and the id or argument.

Each `Problem` has id ``str(key)``, the prompt as its question, ``meta`` = {"instruction_id_list",
"kwargs"} (arguments as checked), and as ``gold`` the canonical JSON of that instruction list
(`Spec.to_json`), so that a (gold, completion) pair, the grader's input, is enough to verify a response.
The prompt is given to the model as it is: the plain template is ``{question}`` and the chat prompt adds
no instruction. There are no stop strings. The task's grader kind is "ifeval".
"""

from __future__ import annotations

from typing import Any

from wiseft.errors import TaskError
from wiseft.jsonl import iter_objects
from wiseft.tasks.base import Problem, Task, register_task
from wiseft.tasks.builtin import resolve_local
from wiseft.tasks.ifeval.checkers import INSTRUCTIONS
from wiseft.tasks.ifeval.evaluate import make_spec

GRADER_KIND = "ifeval"


def problem_from_row(row: dict, where: str) -> Problem:
    """One IFEval record as a `Problem`; TaskError naming `where` (file:line) when it is malformed."""
    for name in ("key", "prompt", "instruction_id_list", "kwargs"):
        if name not in row:
            raise TaskError(f"{where}: IFEval record has no field {name!r}; found {', '.join(sorted(row))}")
    if not isinstance(row["prompt"], str) or not row["prompt"].strip():
        raise TaskError(f"{where}: IFEval field 'prompt' must be a non-blank string")
    ids = row["instruction_id_list"]
    unknown = [i for i in ids if i not in INSTRUCTIONS] if isinstance(ids, list) else []
    if unknown:
        raise TaskError(
            f"{where}: unknown IFEval instruction id {unknown[0]!r}; the verifiers know "
            f"{len(INSTRUCTIONS)} ids (wiseft.tasks.ifeval.INSTRUCTIONS), fix or drop that record"
        )
    try:
        spec = make_spec(ids, row["kwargs"])
    except ValueError as exc:
        raise TaskError(f"{where}: {exc}") from None
    meta = {"instruction_id_list": list(spec.ids), "kwargs": [dict(k) for k in spec.kwargs]}
    return Problem(str(row["key"]), row["prompt"], spec.to_json(), meta)


@register_task("ifeval")
def ifeval(data: Any = None, split: str = "test", limit: int | None = None) -> Task:
    path = resolve_local("ifeval", data, split)
    if path is None:
        raise TaskError(
            "task ifeval needs --data PATH: a JSONL file of IFEval records (key, prompt, "
            "instruction_id_list, kwargs) or a directory holding ifeval/test.jsonl"
        )
    problems = [problem_from_row(row, where) for where, row in iter_objects(path, TaskError)]
    if limit is not None:
        problems = problems[: int(limit)]
    return Task(
        "ifeval",
        problems,
        grader_kind=GRADER_KIND,
        stop=(),
        template="{question}",
        instruction="",
        source=str(path),
    )
