"""Every GSM8K and MATH test gold: the reference solution graded against its own gold is correct, and the
gold with its number changed is incorrect.

Measured counts (kept exact by the assertions below):
- GSM8K, 1319 problems: solutions 1319/1319 correct ("####" rule); changed golds 1319/1319 incorrect.
- MATH, 5000 problems: solutions 5000/5000 correct (last \\boxed{}, nested braces); changed golds
  4999/5000 incorrect. The one exception (CHANGED_EXCEPTIONS): 1/2004! vs 2/2004!, which Math-Verify
  calls equal because its numeric comparison rounds both to 0. 88 golds have no digit (words, letters,
  \\pi, \\sqrt{x}, …); they are changed by appending "+1" and all 88 are graded incorrect.
- MATH-500's answer field against its reference solutions: 500/500 correct.
- Math-Verify alone (no string shortcut), every MATH gold against itself: 5000/5000 (slow test).

Changed MATH golds that are not plain numbers go through Math-Verify (~900 calls, about a minute on two
busy cores), so the full MATH run is marked slow; the normal suite checks a fixed random 300.
"""

import random

import pytest
from support.grading import CHANGED_EXCEPTIONS, DATA, change_number

from wiseft.grading import Grader, normalise
from wiseft.grading.pool import VerifierPool
from wiseft.tasks import get_task


@pytest.fixture(scope="module")
def grader():
    with Grader(kind="math", workers=2, timeout=10.0) as g:
        yield g


def grade_solutions(grader, task):
    items = [(p.gold, p.meta["solution"]) for p in task.problems]
    return grader.grade(items, task=task, problem_ids=[p.id for p in task.problems])


def grade_changed(grader, task, problems):
    items = [(p.gold, f"So the answer is $\\boxed{{{change_number(p.gold)}}}$.") for p in problems]
    return grader.grade(items, task=task, problem_ids=[p.id for p in problems])


def test_gsm8k_every_gold(grader):
    task = get_task("gsm8k", data=DATA)
    assert len(task) == 1319
    own = grade_solutions(grader, task)
    assert sum(g.correct for g in own) == 1319
    assert {g.extraction for g in own} == {"hash"}
    changed = grade_changed(grader, task, task.problems)
    assert sum(g.verdict == "incorrect" for g in changed) == 1319


def test_math_every_reference_solution(grader):
    task = get_task("math", data=DATA)
    assert len(task) == 5000
    own = grade_solutions(grader, task)
    wrong = [(p.id, p.gold, g) for p, g in zip(task.problems, own, strict=True) if not g.correct]
    assert wrong == []
    assert {g.extraction for g in own} == {"boxed"}


def test_math500_answer_field_matches_reference_solutions(grader):
    task = get_task("math500", data=DATA)
    own = grade_solutions(grader, task)
    assert sum(g.correct for g in own) == 500


def check_changed(grader, task, problems):
    changed = grade_changed(grader, task, problems)
    accepted = [p.gold for p, g in zip(problems, changed, strict=True) if g.verdict != "incorrect"]
    assert set(accepted) <= CHANGED_EXCEPTIONS, accepted
    return len(problems) - len(accepted)


def test_math_changed_golds_random_subset(grader):
    task = get_task("math", data=DATA)
    subset = random.Random(0).sample(task.problems, 300)
    check_changed(grader, task, subset)


@pytest.mark.slow
def test_math_changed_golds_all(grader):
    task = get_task("math", data=DATA)
    assert check_changed(grader, task, task.problems) == 4999
    assert sum(not any(c.isdigit() for c in p.gold) for p in task.problems) == 88


@pytest.mark.slow
def test_math_verify_accepts_every_math_gold_against_itself():
    """Without the identical-string shortcut: Math-Verify itself parses every gold and accepts it
    (5000/5000 measured, about 35 s on two cores)."""
    golds = [normalise(p.gold) for p in get_task("math", data=DATA).problems]
    with VerifierPool(workers=2, timeout=10.0) as pool:
        results = pool.run([(g, g) for g in golds], keys=golds)
    assert [g for g, r in zip(golds, results, strict=True) if r is not True] == []
