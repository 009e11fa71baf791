"""IFEval's four accuracies with bootstrap intervals, from graded records (`wiseft.grading.ifeval`).

- **prompt level**: a prompt counts when all its instructions are followed (strict or loose, as
  `wiseft.tasks.ifeval.evaluate` defines them); **instruction level**: followed instructions over all.

`ifeval_scores(records, problems)` averages several samples of one prompt first (as Mean@k does). The
instruction-level accuracy is a ratio of sums, Σ followed / Σ instructions; its interval comes from the
per-prompt values R + (f_p − R·n_p)·P/N (R the ratio, f_p and n_p a prompt's followed and total
instructions, P prompts, N instructions), whose mean is exactly R and whose bootstrap is the first-order
(delta-method) bootstrap of the ratio. All four share one set of resamples (`metrics.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wiseft.errors import GradingError
from wiseft.metrics import bootstrap_ci

METRICS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")


def _verdicts(rec: dict, n: int, where: str) -> tuple[list[bool], list[bool]]:
    detail = rec.get("detail")
    if not isinstance(detail, dict):
        raise GradingError(f"{where}: no IFEval 'detail' field; grade the samples with the ifeval task first")
    strict, loose = detail.get("strict"), detail.get("loose")
    for name, v in (("strict", strict), ("loose", loose)):
        if not isinstance(v, list) or len(v) != n or not all(isinstance(x, bool) for x in v):
            raise GradingError(f"{where}: detail.{name} must be a list of {n} booleans (one per instruction)")
    return strict, loose  # type: ignore[return-value]


def _per_prompt(records: Sequence[dict], problems: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(P × 4 per-prompt means of [prompt strict, prompt loose, followed strict, followed loose], n_p)."""
    n_of = {p.id: len(p.meta["instruction_id_list"]) for p in problems}
    rows: dict[str, list[list[float]]] = {}
    variants = {r.get("variant") for r in records}
    if len(variants) > 1:
        raise GradingError(f"IFEval scores: records hold {len(variants)} variants; score one at a time")
    for i, rec in enumerate(records):
        where = f"record {i + 1}"
        pid = rec.get("problem_id")
        if pid not in n_of:
            raise GradingError(f"{where}: problem id {pid!r} is not an IFEval problem of this task")
        strict, loose = _verdicts(rec, n_of[pid], where)
        rows.setdefault(pid, []).append([all(strict), all(loose), sum(strict), sum(loose)])
    if not rows:
        raise GradingError("IFEval scores: no graded records")
    means = np.array([np.mean(np.array(r, dtype=np.float64), axis=0) for r in rows.values()])
    return means, np.array([n_of[pid] for pid in rows], dtype=np.float64)


def ifeval_scores(
    records: Sequence[dict],
    problems: Sequence[Any],
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict:
    """Prompt- and instruction-level strict and loose accuracy, each {"value", "lo", "hi"}, plus the
    counts of prompts, instructions and samples. `records` carry ``problem_id`` and ``detail`` =
    {"strict": [...], "loose": [...]} (one verdict per instruction); `problems` are the task's."""
    means, n_p = _per_prompt(records, problems)
    p, total = len(n_p), float(n_p.sum())
    columns, values = [means[:, 0], means[:, 1]], [means[:, 0].mean(), means[:, 1].mean()]
    for followed in (means[:, 2], means[:, 3]):
        ratio = followed.sum() / total
        columns.append(ratio + (followed - ratio * n_p) * p / total)
        values.append(ratio)  # the ratio itself, not the columns' mean (equal up to rounding)
    _, lo, hi = bootstrap_ci(np.column_stack(columns), seed=seed, n_boot=n_boot, level=level)
    out: dict = {
        name: {"value": float(m), "lo": float(a), "hi": float(b)}
        for name, m, a, b in zip(METRICS, values, lo, hi, strict=True)
    }
    out.update(prompts=p, instructions=int(total), samples=len(records))
    return out
