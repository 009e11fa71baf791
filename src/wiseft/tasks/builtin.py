"""The built-in tasks: gsm8k, math (the 5000-problem test set), math500, aime24, aime25 and jsonl.

Each loads from local JSONL (`data=` a file, or a directory holding `<task>/test.jsonl` or `test.jsonl`,
e.g. `../shared/data`), from the directory named by the environment variable WISEFT_DATA, or else from
the Hugging Face Hub through `datasets` (a clear TaskError when that is impossible, e.g. offline).

Gold answers: GSM8K's is the text after "####" with thousands separators removed; MATH-style tasks use
the record's answer field where there is one, else the last \\boxed{} of the reference solution.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiseft.errors import TaskError
from wiseft.jsonl import iter_objects
from wiseft.latex import last_boxed
from wiseft.network import hub_reachable, why_offline
from wiseft.tasks.base import Problem, Task, register_task

DATA_ENV = "WISEFT_DATA"


@dataclass(frozen=True)
class HubSource:
    path: str
    config: str | None
    split: str


# Public copies of each benchmark on the Hub (used only when no local data is given).
HUB = {
    "gsm8k": HubSource("openai/gsm8k", "main", "test"),
    "math": HubSource("EleutherAI/hendrycks_math", None, "test"),
    "math500": HubSource("HuggingFaceH4/MATH-500", None, "test"),
    "aime24": HubSource("HuggingFaceH4/aime_2024", None, "train"),
    "aime25": HubSource("math-ai/aime25", None, "test"),
}


# -------------------------------------------------------------------------------------------- loading


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_objects(path, TaskError)]


def resolve_local(name: str, data: Any, split: str = "test") -> Path | None:
    """The JSONL file for task `name` under `data` (or $WISEFT_DATA), None when neither is given."""
    if data is None:
        data = os.environ.get(DATA_ENV) or None
        if data is None:
            return None
    root = Path(data)
    if root.is_file():
        return root
    if not root.exists():
        raise TaskError(f"--data {root} does not exist; give a JSONL file or a directory of them")
    for candidate in (root / name / f"{split}.jsonl", root / f"{split}.jsonl", root / f"{name}.jsonl"):
        if candidate.is_file():
            return candidate
    raise TaskError(
        f"--data {root} holds no {name}/{split}.jsonl, {split}.jsonl or {name}.jsonl for task {name!r}"
    )


def load_rows(name: str, data: Any, split: str = "test") -> tuple[list[dict], str]:
    """Rows of task `name` and a description of where they came from."""
    path = resolve_local(name, data, split)
    if path is not None:
        return read_jsonl(path), str(path)
    hub = HUB.get(name)
    if hub is None:
        raise TaskError(f"task {name!r} needs --data PATH (a JSONL file)")
    return _load_hub(name, hub), f"hf://{hub.path}"


def _load_hub(name: str, hub: HubSource) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise TaskError(
            f"task {name}: no --data given and the `datasets` package is not installed; pass --data PATH "
            "with a local copy or install wiseft[data]"
        ) from exc
    if not hub_reachable():
        raise TaskError(
            f"task {name}: no --data given and {why_offline()}; pass --data PATH with a local copy (a JSONL "
            "file, or a directory holding <task>/test.jsonl such as ../shared/data)"
        )
    try:
        ds = datasets.load_dataset(hub.path, hub.config, split=hub.split)
    except Exception as exc:  # offline, not found, gated: all mean "use local data"
        raise TaskError(
            f"task {name}: could not load {hub.path} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc)[:200]}); when offline pass --data PATH with a local copy (a JSONL file or directory)"
        ) from exc
    return [dict(row) for row in ds]


def _field(row: dict, names: Iterable[str], where: str) -> Any:
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    raise TaskError(
        f"{where}: none of the fields {', '.join(names)} is present; found {', '.join(sorted(row))}"
    )


# ------------------------------------------------------------------------------------------ gold answers


def gsm8k_gold(answer: str) -> str:
    """The text after the last "####", without thousands separators (e.g. "2,125" → "2125")."""
    if "####" not in answer:
        raise TaskError("GSM8K answer has no '####' line")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def math_gold(row: dict, where: str) -> str:
    answer = row.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer).strip()
    solution = row.get("solution")
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed:
            return boxed
    raise TaskError(f"{where}: no answer field and no \\boxed{{}} in the solution")


# --------------------------------------------------------------------------------------------- tasks


def _math_style(name: str, data: Any, last_number: bool, ids: tuple[str, ...], **options: Any) -> Task:
    split = options.pop("split", "test")
    limit = options.pop("limit", None)
    if options:
        raise TaskError(f"task {name}: unknown option(s) {', '.join(sorted(options))}")
    rows, source = load_rows(name, data, split)
    problems = []
    for i, row in enumerate(rows):
        where = f"{source} record {i + 1}"
        question = _field(row, ("problem", "question"), where)
        pid = next((str(row[k]) for k in ids if row.get(k) is not None), str(i))
        meta = {k: row[k] for k in ("level", "type", "subject", "solution", "url") if k in row}
        problems.append(Problem(pid, str(question), math_gold(row, where), meta))
    if limit is not None:
        problems = problems[: int(limit)]
    return Task(name, problems, grader_kind="math", last_number_fallback=last_number, source=source)


@register_task("gsm8k")
def gsm8k(data: Any = None, split: str = "test", limit: int | None = None) -> Task:
    rows, source = load_rows("gsm8k", data, split)
    problems = []
    for i, row in enumerate(rows):
        where = f"{source} record {i + 1}"
        answer = _field(row, ("answer",), where)
        try:
            gold = gsm8k_gold(str(answer))
        except TaskError as exc:
            raise TaskError(f"{where}: {exc}") from None
        problems.append(Problem(str(i), str(_field(row, ("question",), where)), gold, {"solution": answer}))
    if limit is not None:
        problems = problems[: int(limit)]
    return Task("gsm8k", problems, grader_kind="math", last_number_fallback=True, source=source)


@register_task("math")
def math_full(data: Any = None, **options: Any) -> Task:
    return _math_style("math", data, False, ("unique_id", "idx", "id"), **options)


@register_task("math500")
def math500(data: Any = None, **options: Any) -> Task:
    return _math_style("math500", data, False, ("unique_id", "idx", "id"), **options)


@register_task("aime24")
def aime24(data: Any = None, **options: Any) -> Task:
    return _math_style("aime24", data, True, ("id",), **options)


@register_task("aime25")
def aime25(data: Any = None, **options: Any) -> Task:
    return _math_style("aime25", data, True, ("id",), **options)


@register_task("jsonl")
def jsonl(
    data: Any = None,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str | None = "id",
    name: str = "jsonl",
    grader: str = "math",
    gsm8k_answers: bool = False,
    last_number: bool = False,
) -> Task:
    """Any JSONL file: the question and answer field names are options (`answer_field` may hold a whole
    solution: its last \\boxed{} is used, or its "####" tail with `gsm8k_answers`)."""
    if data is None:
        raise TaskError("task jsonl needs --data PATH to a JSONL file")
    path = Path(data)
    if not path.is_file():
        raise TaskError(f"task jsonl: --data {path} is not a file")
    rows = read_jsonl(path)
    problems = []
    for i, row in enumerate(rows):
        where = f"{path} record {i + 1}"
        if question_field not in row:
            raise TaskError(
                f"{where}: no field {question_field!r} (question field); found {', '.join(sorted(row))}"
            )
        if answer_field not in row:
            raise TaskError(
                f"{where}: no field {answer_field!r} (answer field); found {', '.join(sorted(row))}"
            )
        answer = str(row[answer_field])
        if gsm8k_answers:
            gold = gsm8k_gold(answer)
        else:
            gold = last_boxed(answer) or answer.strip()
        pid = str(row[id_field]) if id_field and row.get(id_field) is not None else str(i)
        problems.append(Problem(pid, str(row[question_field]), gold, {}))
    return Task(name, problems, grader_kind=grader, last_number_fallback=last_number, source=str(path))
