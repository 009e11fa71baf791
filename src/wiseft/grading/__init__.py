"""Grading: extract the final answer of a completion, verify it against the gold, group equal answers.

`Grader` (grader.py) is the API; `extract.py` holds the extraction rules, `pool.py` and `worker.py` run
Math-Verify in worker processes with a per-call timeout, `records.py` grades sample records (the JSONL
schema of `wiseft grade`) and turns graded records into `metrics.ProblemSamples`.
"""

from wiseft.grading.extract import extract_answer, last_boxed, normalise
from wiseft.grading.grader import VERDICTS, Grade, Grader, GradingStats

__all__ = ["VERDICTS", "Grade", "Grader", "GradingStats", "extract_answer", "last_boxed", "normalise"]
