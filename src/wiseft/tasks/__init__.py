"""Tasks: problems, gold answers and prompts (gsm8k, math, math500, aime24, aime25, jsonl, toy).

`get_task(name, data=None, **options)` builds one; `register_task(name)` adds a factory;
`wiseft.tasks.split.split_problems(problems, val_fraction, seed)` gives the validation/test split (its own
module: it loads numpy, which grading does not).
"""

from wiseft.prompts import STYLES as PROMPT_STYLES
from wiseft.prompts import Prompter, make_prompter
from wiseft.tasks.base import (
    INSTRUCTION,
    PLAIN_TEMPLATE,
    Problem,
    Task,
    get_task,
    register_task,
    task_names,
)

__all__ = [
    "PROMPT_STYLES",
    "Prompter",
    "make_prompter",
    "INSTRUCTION",
    "PLAIN_TEMPLATE",
    "Problem",
    "Task",
    "get_task",
    "register_task",
    "task_names",
]
