"""Benchmark: grading 500 MATH-500 problems × 64 samples whose answers repeat as real samples do.

Each problem gets a few candidate answers — the gold, an equivalent rewrite of it, wrong answers made by
changing a number, another problem's gold — drawn with Zipf-like weights (most samples share one or two
answers), plus a few completions with no answer. Completions carry reference-solution text as a body,
so extraction sees realistic lengths.

Every run builds a fresh Grader (cold cache, workers started inside the timing) and grades all records
end to end with `grade_records`, as `wiseft grade` does. Printed: median of the runs; the floor it is
compared with is the extraction-only rate (string work, no verification) measured in the same run, and
the targets of the issue: ≥ 20× fewer verifier calls than samples, ≥ 2,000 graded samples/s.

    .venv/bin/python bench/grade.py [--data ../shared/data] [--runs 3] [--samples 64] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wiseft.grading import Grader, extract_answer
from wiseft.grading.apply import grade_records
from wiseft.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def change_number(gold: str, by: int) -> str:
    m = re.search(r"\d+", gold)
    if m is None:
        return gold + f"+{by}"
    return gold[: m.start()] + str(int(m.group()) + by) + gold[m.end() :]


def equivalent_rewrite(gold: str) -> str:
    """A different string for the same answer, as models write it."""
    if re.fullmatch(r"-?\d+", gold):
        return gold + ".0"
    if "\\frac" in gold:
        return gold.replace("\\frac", "\\dfrac")
    return "\\left(" + gold + "\\right)" if gold.startswith("(") else gold + " "


def make_records(task, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    golds = [p.gold for p in task.problems]
    records = []
    for p in task.problems:
        body = re.sub(r"\\boxed\{", "{", p.meta.get("solution", ""))[:1500]
        candidates = [p.gold, change_number(p.gold, 1), equivalent_rewrite(p.gold), change_number(p.gold, 2)]
        candidates.append(rng.choice(golds))
        rng.shuffle(candidates)
        m = rng.randint(2, 5)  # a few distinct answers per problem
        weights = [1.0 / (r + 1) ** 1.5 for r in range(m)]
        for i in range(n):
            if rng.random() < 0.03:
                completion = body + "\nI could not finish."
            else:
                answer = rng.choices(candidates[:m], weights)[0]
                completion = f"{body}\nTherefore the answer is $\\boxed{{{answer}}}$."
            records.append(
                {
                    "problem_id": p.id,
                    "sample_idx": i,
                    "completion": completion,
                    "n_tokens": len(completion) // 4,
                    "finish_reason": "stop",
                }
            )
    return records


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the verifier workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def one_run(task, records, workers):
    cpu0, start = cpu_seconds(), time.perf_counter()
    with Grader(kind="math", workers=workers, timeout=5.0) as grader:
        graded = grade_records(records, task, grader)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    assert len(graded) == len(records)
    t0 = time.perf_counter()
    for r in records:
        extract_answer(r["completion"])
    extract_only = time.perf_counter() - t0
    return elapsed, cpu, extract_only, grader.stats, graded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    task = get_task("math500", data=args.data)
    records = make_records(task, args.samples, seed=0)
    distinct_answers = len(
        {(r["problem_id"], (extract_answer(r["completion"]) or ("",))[0]) for r in records}
    )
    times, cpus, extract_times, stats = [], [], [], None
    for _ in range(args.runs):
        elapsed, cpu, extract_only, stats, graded = one_run(task, records, args.workers)
        times.append(elapsed)
        cpus.append(cpu)
        extract_times.append(extract_only)
    med = statistics.median(times)
    n = len(records)
    correct = sum(r["correct"] for r in graded) / n
    table = Table(title=f"bench/grade.py: MATH-500 × {args.samples} samples, median of {args.runs} runs")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("target / floor", justify="right")
    calls = stats.verifier_calls
    table.add_row("samples", f"{n:,}", "")
    table.add_row("distinct (problem, answer) strings", f"{distinct_answers:,}", "")
    table.add_row("distinct (gold, normalised answer) pairs", f"{stats.distinct_pairs:,}", "")
    table.add_row("  decided by identical strings", f"{stats.string_equal:,}", "")
    table.add_row("  decided by exact numbers", f"{stats.numeric:,}", "")
    table.add_row("class comparisons (answer vs answer)", f"{stats.class_comparisons:,}", "")
    table.add_row(
        "Math-Verify calls (verdicts + classes)",
        f"{calls:,} ({calls - stats.class_calls} + {stats.class_calls})",
        "",
    )
    ratio = n / max(calls, 1)
    table.add_row("samples / verifier call", f"{ratio:,.1f}×", "≥ 20× " + ("✓" if ratio >= 20 else "✗"))
    rate = n / med
    table.add_row(
        "graded samples/s, end to end (cold)", f"{rate:,.0f}", "≥ 2,000 " + ("✓" if rate >= 2000 else "✗")
    )
    table.add_row("run times (s)", ", ".join(f"{t:.2f}" for t in times), "")
    cores = os.cpu_count() or 1
    cpu = statistics.median(cpus)
    table.add_row("CPU seconds per run (parent + workers)", f"{cpu:.2f}", "")
    table.add_row(
        f"samples/s if the run had the {cores} cores to itself",
        f"{n / (cpu / cores):,.0f}",
        "≥ 2,000 " + ("✓" if n / (cpu / cores) >= 2000 else "✗"),
    )
    table.add_row("load average during the runs", f"{os.getloadavg()[0]:.1f}", f"({cores} cores)")
    table.add_row(
        "floor: extraction only, samples/s",
        f"{n / statistics.median(extract_times):,.0f}",
        "(string work alone)",
    )
    table.add_row("timeouts / worker restarts", f"{stats.timeouts} / {stats.worker_restarts}", "")
    table.add_row("share correct", f"{correct:.3f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
