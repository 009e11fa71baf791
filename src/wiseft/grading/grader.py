"""Extract, then verify: the `Grader` (see docs/ARCHITECTURE.md, "Grading").

Sampling many solutions per problem repeats answers heavily, so the grader does as little verification
as it can, and never the same twice:

1. answers are extracted and normalised in the main process (cheap string code);
2. identical normalised answers of a problem are graded once; an answer equal to the gold as a string
   is correct without any call;
3. plain exact numbers on both sides (integers, decimals, ``a/b``, ``\\frac{a}{b}``) are compared as
   fractions, which agrees with Math-Verify's verdict and costs microseconds;
4. everything else goes to Math-Verify in worker processes with a per-call timeout (`pool.py`);
5. every verdict is cached by (task, gold, normalised answer), every equivalence test between two
   answers by (task, answer, answer), for the life of the grader.

Answer classes (for majority vote and distinct-answer counts) use the same verifier: all answers
verified correct form the gold's class; each other answer is compared with one representative of each
existing class of wrong answers and joins the first match, or opens a new class.

Bounded work per problem: a comparison that times out (or fails) counts as "different", and an answer
whose comparison timed out gets a class of its own without becoming a representative (so it is never
compared again); every verifier call of a problem, verdicts and classes alike, is charged to that
problem's budget (`problem_budget`, seconds of verifier time, default `DEFAULT_PROBLEM_BUDGET`), and once
it is spent the problem's remaining answers are not verified (verdict "timeout", with a reason saying so)
and each remaining unplaced answer gets a class of its own. A problem's calls go first to one worker (its
parse cache holds the gold and the representatives), and every idle worker takes calls from the busiest
one, one call at a time, so a slow problem is spread over all workers.

The "int" kind (the toy task) compares integers exactly and never starts a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wiseft.errors import GradingError
from wiseft.grading.classes import MAX_ANSWER_CHARS, AnswerClasses
from wiseft.grading.extract import extract_answer, normalise
from wiseft.grading.grade import Grade
from wiseft.grading.ifeval import grade_ifeval_items
from wiseft.grading.ifeval import grader_name as ifeval_grader_name
from wiseft.grading.numbers import exact_number, int_value
from wiseft.grading.pool import BUDGET, ERROR, TIMEOUT, Budget, VerifierPool
from wiseft.grading.thinking import graded_text
from wiseft.limits import DEFAULT_PROBLEM_BUDGET, check_budget, check_timeout

VERDICTS = ("correct", "incorrect", "no_answer", "timeout")
KINDS = ("math", "int", "ifeval")
UNFAILING = (True, False)  # verifier results that are verdicts (the others: timeout, error, budget)


@dataclass
class GradingStats:
    """Counters that show how much verification the cache and the fast paths saved."""

    samples: int = 0
    no_answer: int = 0
    pairs_seen: int = 0  # (gold, answer) lookups, one per distinct answer of each problem
    distinct_pairs: int = 0  # of which not in the cache yet
    string_equal: int = 0  # decided by equal normal forms
    numeric: int = 0  # decided by exact fraction comparison
    verifier_calls: int = 0  # Math-Verify calls (verdicts and class comparisons)
    class_calls: int = 0  # of which class comparisons
    class_comparisons: int = 0  # answer-vs-answer tests (cached or not)
    timeouts: int = 0
    errors: int = 0
    budget_skipped: int = 0  # calls not made because their problem's budget was spent
    budget_problems: int = 0  # problems whose budget was spent
    worker_restarts: int = 0
    rules: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def add(self, other: GradingStats) -> None:
        """Add another grader's counters to these (one summary over several graders)."""
        for name, value in other.__dict__.items():
            if name == "rules":
                for rule, count in value.items():
                    self.rules[rule] = self.rules.get(rule, 0) + count
            else:
                setattr(self, name, getattr(self, name) + value)


class Grader:
    """Grades completions against gold answers. A context manager: `close()` stops the workers."""

    def __init__(
        self,
        kind: str = "math",
        workers: int | None = None,
        timeout: float = 5.0,
        problem_budget: float = DEFAULT_PROBLEM_BUDGET,
        thinking: tuple[str, str | None] | None = None,
    ):
        """`kind` "math" (Math-Verify), "int" (exact integers) or "ifeval" (instruction checkers);
        `thinking` (close tag, open tag) makes the grader read only the answer after a closed thinking
        block (`grading.thinking.graded_text`), the whole completion when none closed."""
        if kind not in KINDS:
            raise GradingError(f"grader kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.thinking = thinking
        self.timeout = check_timeout(timeout)
        self.problem_budget = check_budget(problem_budget)
        self.pool = VerifierPool(workers=workers, timeout=self.timeout) if kind == "math" else None
        self._verdicts: dict[tuple[str, str, str], str] = {}
        self._same: dict[tuple[str, str, str], bool] = {}
        self.stats = GradingStats()
        if kind == "math":
            from importlib import metadata

            self.name = f"math-verify=={metadata.version('math-verify')}"
        elif kind == "ifeval":
            self.name = ifeval_grader_name()
        else:
            self.name = "int-exact"

    # ------------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self.pool is not None:
            self.stats.worker_restarts = self.pool.restarts
            self.pool.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- extraction

    def extract(self, completion: str, task: Any = None) -> tuple[str, str] | None:
        """(answer, rule) by the task's own hook when it has one, else by the generic rules."""
        hook: Callable | None = getattr(task, "extract_answer", None)
        if hook is not None:
            found = hook(completion)
        else:
            found = extract_answer(completion, last_number=bool(getattr(task, "last_number_fallback", False)))
        if found is None or not str(found[0]).strip():
            return None
        return str(found[0]).strip(), found[1]

    # ---------------------------------------------------------------------------------- verification

    def verify(self, gold: str, answers: Sequence[str], task: Any = None) -> list[str]:
        """Verdicts ("correct" / "incorrect" / "timeout") of extracted answers against one gold."""
        g = normalise(gold)
        return self.verify_many([(g, normalise(a)) for a in answers], task)

    def verify_many(
        self,
        pairs: Sequence[tuple[str, str]],
        task: Any = None,
        groups: Sequence[Any] | None = None,
        budget: Budget | None = None,
    ) -> list[str]:
        """Verdicts of (gold, normalised answer) pairs, from the cache or one verification per new pair.

        With `groups` (each pair's problem) and `budget`, a pair whose problem spent its budget is not
        verified: its verdict is "budget" (not cached; `grade` reports it as "timeout" with a reason)."""
        out: list[str | None] = [None] * len(pairs)
        fresh = self._lookup(pairs, task, self._verdicts, out, counts_as_pair=True)
        if fresh:
            keys = list(fresh)
            owners = [groups[fresh[k][0]] for k in keys] if groups is not None else None
            results = self._call([(k[1], k[2]) for k in keys], [k[1] for k in keys], owners, budget)
            for key, result in zip(keys, results, strict=True):
                verdict = _verdict(result)
                if result != BUDGET:
                    self._verdicts[key] = verdict
                for i in fresh[key]:
                    out[i] = verdict
        return out  # type: ignore[return-value]

    def same_answer(
        self, pairs: Sequence[tuple[str, str]], task: Any = None, affinity: Sequence[str] | None = None
    ) -> list[bool]:
        """Whether each pair of normalised answers is equivalent (first one read as the reference); a
        comparison that timed out or failed counts as not equivalent.

        `affinity` routes pairs to workers (pairs with equal affinity go to the same worker first, for its
        parse cache; idle workers take calls from busy ones); by default each pair's reference answer."""
        return [r is True for r in self._compare(pairs, task, affinity)]

    def _compare(self, pairs, task, affinity=None, groups=None, budget: Budget | None = None) -> list:
        """Raw comparison results (True, False, "timeout", "error", "budget") of answer pairs."""
        out: list = [None] * len(pairs)
        fresh = self._lookup(pairs, task, self._same, out, counts_as_pair=False)
        if fresh:
            keys = list(fresh)
            route = [affinity[fresh[k][0]] if affinity is not None else k[1] for k in keys]
            owners = [groups[fresh[k][0]] for k in keys] if groups is not None else None
            calls_before = self.stats.verifier_calls
            results = self._call([(k[1], k[2]) for k in keys], route, owners, budget)
            self.stats.class_calls += self.stats.verifier_calls - calls_before
            for key, result in zip(keys, results, strict=True):
                if result != BUDGET:
                    self._same[key] = result
                for i in fresh[key]:
                    out[i] = result
        return out

    def _lookup(self, pairs, task, cache: dict, out: list, counts_as_pair: bool) -> dict:
        """Fill `out` from the cache and the shortcuts; return the pairs left for the verifier."""
        tname = _task_name(task)
        quick_value = (lambda q: "correct" if q else "incorrect") if counts_as_pair else (lambda q: q)
        fresh: dict[tuple[str, str, str], list[int]] = {}
        for i, (a, b) in enumerate(pairs):
            if counts_as_pair:
                self.stats.pairs_seen += 1
            else:
                self.stats.class_comparisons += 1
            key = (tname, a, b)
            if key in cache:
                out[i] = cache[key]
            elif key in fresh:
                fresh[key].append(i)
            else:
                if counts_as_pair:
                    self.stats.distinct_pairs += 1
                quick = self._quick(a, b)
                if quick is not None:
                    cache[key] = out[i] = quick_value(quick)
                else:
                    fresh[key] = [i]
        return fresh

    def _quick(self, a: str, b: str) -> bool | None:
        """A verdict without the verifier where one is certain, else None."""
        if a == b:
            self.stats.string_equal += 1
            return True
        if self.kind == "int":
            x, y = int_value(a), int_value(b)
            self.stats.numeric += 1
            return x is not None and x == y
        if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
            return None
        x, y = exact_number(a), exact_number(b)
        if x is not None and y is not None:
            if x[0] == y[0]:
                self.stats.numeric += 1
                return True
            if x[1] and y[1]:
                self.stats.numeric += 1
                return False
        return None

    def _call(
        self,
        pairs: list[tuple[str, str]],
        route: list[str],
        groups: list | None = None,
        budget: Budget | None = None,
    ) -> list:
        """Math-Verify on pairs that no shortcut decided; overlong answers or golds are not sent at all."""
        results: list = [TIMEOUT] * len(pairs)
        send = [i for i, (a, b) in enumerate(pairs) if max(len(a), len(b)) <= MAX_ANSWER_CHARS]
        if send:
            answers = self.pool.run(
                [pairs[i] for i in send],
                keys=[route[i] for i in send],
                groups=[groups[i] for i in send] if groups is not None else None,
                budget=budget,
            )
            for i, r in zip(send, answers, strict=True):
                results[i] = r
            self.stats.verifier_calls += sum(r != BUDGET for r in answers)
            self.stats.worker_restarts = self.pool.restarts
        self.stats.timeouts += sum(r == TIMEOUT for r in results)
        self.stats.errors += sum(r == ERROR for r in results)
        self.stats.budget_skipped += sum(r == BUDGET for r in results)
        return results

    # --------------------------------------------------------------------------------------- classes

    def classify(self, answers: Sequence[str | None], gold: str | None = None, task: Any = None) -> list[int]:
        """Answer classes of one problem's answers (−1 for None), numbered by first appearance.

        With `gold`, answers verified correct share one class without comparing them with each other.
        """
        forms = [normalise(a) if a is not None else None for a in answers]
        distinct = list(dict.fromkeys(f for f in forms if f is not None))
        group = gold or ""
        budget = Budget(self.problem_budget) if self.pool is not None else None
        verdicts = {}
        if gold is not None:
            found = self.verify_many(
                [(normalise(gold), f) for f in distinct], task, [group] * len(distinct), budget
            )
            verdicts = dict(zip(distinct, found, strict=True))
        return self._classes([(group, forms, distinct, verdicts)], task, budget)[0]

    def _classes(self, problems: list[tuple], task, budget: Budget | None = None) -> list[list[int]]:
        """Answer classes for many problems at once: (group, forms, distinct forms, verdicts) each.

        Greedy, in order of first appearance: each answer not yet placed is compared with the
        representatives of the wrong-answer classes so far. The problems advance in lockstep rounds so
        that every round's comparisons, across all problems, go to the workers as one batch.
        """
        states = [AnswerClasses.start(group, distinct, verdicts) for group, _, distinct, verdicts in problems]
        while any(st.pending for st in states):
            self._class_round(states, task, budget)
        return [st.numbered(forms) for (_, forms, _, _), st in zip(problems, states, strict=True)]

    def _class_round(self, states: list[AnswerClasses], task, budget: Budget | None) -> None:
        """Place the next pending answer of every problem (one batch of comparisons for all of them)."""
        pairs, owner = [], []
        for n, st in enumerate(states):
            if st.pending and budget is not None and budget.exhausted(st.group):
                st.alone(st.pending)  # the problem's budget is spent: no more comparisons
            elif st.pending:
                pairs += [(r, st.pending[0]) for r in st.reps]
                owner += [n] * len(st.reps)
        groups = [states[n].group for n in owner]
        route = [str(g) for g in groups]  # a problem's worker keeps its parses; idle workers steal
        results = self._compare(pairs, task, route, groups, budget) if pairs else []
        hits: dict[int, str] = {}
        failed: set[int] = set()
        for (r, _), n, result in zip(pairs, owner, results, strict=True):
            if result is True and n not in hits:
                hits[n] = r
            elif result not in UNFAILING:
                failed.add(n)
        for n, st in enumerate(states):
            if st.pending:
                st.place(st.pending.pop(0), hits.get(n), represent=n not in failed)

    # ------------------------------------------------------------------------------------------ grade

    def grade(
        self,
        items: Sequence[tuple[str, str]],
        task: Any = None,
        problem_ids: Sequence[str] | None = None,
    ) -> list[Grade]:
        """Grade (gold, completion) items. Answer classes are per problem: items are grouped by
        `problem_ids` when given, else by gold answer. Each problem's verifier time is bounded by
        `problem_budget` seconds (see the module docstring)."""
        if problem_ids is not None and len(problem_ids) != len(items):
            raise GradingError(f"grade: {len(items)} items but {len(problem_ids)} problem ids")
        if self.kind == "ifeval":
            return self._grade_ifeval(items)
        if self.thinking is not None:
            items = [(gold, self._answer_part(completion)) for gold, completion in items]
        groups = list(problem_ids) if problem_ids is not None else [g for g, _ in items]
        extracted = [self._extract_item(gold, completion, task) for gold, completion in items]
        # Answers repeat heavily: normalise each distinct string once.
        form_of = {a: normalise(a) for a in {f[0] for f in extracted if f}}
        forms = [form_of[f[0]] if f else None for f in extracted]
        golds = {g: normalise(g) for g in {g for g, _ in items}}
        # One verification per distinct (gold, answer) of the whole batch, so workers see it all at once;
        # each is charged to the first problem that has it.
        owner: dict[tuple[str, str], Any] = {}
        for (g, _), f, key in zip(items, forms, groups, strict=True):
            if f is not None:
                owner.setdefault((golds[g], f), key)
        budget = Budget(self.problem_budget) if self.pool is not None else None
        pairs = list(owner)
        verdicts = self.verify_many(pairs, task, groups=[owner[p] for p in pairs], budget=budget)
        verdict_of = dict(zip(pairs, verdicts, strict=True))
        by_group: dict[Any, list[int]] = {}
        for i, key in enumerate(groups):
            by_group.setdefault(key, []).append(i)
        problems = []
        for key, idx in by_group.items():
            gold = golds[items[idx[0]][0]]
            f_list = [forms[i] for i in idx]
            distinct = list(dict.fromkeys(f for f in f_list if f is not None))
            problems.append((key, f_list, distinct, {f: verdict_of[(gold, f)] for f in distinct}))
        classes = [-1] * len(items)
        for idx, found in zip(by_group.values(), self._classes(problems, task, budget), strict=True):
            for i, c in zip(idx, found, strict=True):
                classes[i] = c
        if budget is not None:
            self.stats.budget_problems += len(budget.exhausted_groups())
        return [
            self._grade_of(
                found, verdict_of[(golds[gold], forms[i])] if found else None, classes[i], golds[gold]
            )
            for i, ((gold, _), found) in enumerate(zip(items, extracted, strict=True))
        ]

    def _answer_part(self, completion: Any) -> Any:
        if not isinstance(completion, str):
            return completion  # refused by _extract_item with the usual message
        return graded_text(completion, *self.thinking)  # type: ignore[misc]

    def _grade_ifeval(self, items: Sequence[tuple[str, str]]) -> list[Grade]:
        close, opener = self.thinking if self.thinking is not None else (None, None)
        grades = grade_ifeval_items(items, close_tag=close, open_tag=opener)
        self.stats.samples += len(grades)
        self.stats.no_answer += sum(g.verdict == "no_answer" for g in grades)
        return grades

    def _extract_item(self, gold: Any, completion: Any, task: Any) -> tuple[str, str] | None:
        if not isinstance(completion, str) or not isinstance(gold, str):
            raise GradingError("grade: every item must be a (gold: str, completion: str) pair")
        found = self.extract(completion, task)
        self.stats.samples += 1
        if found is None:
            self.stats.no_answer += 1
        else:
            self.stats.rules[found[1]] = self.stats.rules.get(found[1], 0) + 1
        return found

    def _grade_of(self, found: tuple[str, str] | None, verdict: str | None, cls: int, gold: str) -> Grade:
        if found is None:
            return Grade(None, None, "no_answer", False, -1, "no final answer found in the completion")
        reason = None
        if verdict == BUDGET:
            verdict = TIMEOUT
            reason = (
                f"not verified: this problem used up its verification budget of {self.problem_budget:g} s "
                "(raise --problem-budget to verify more)"
            )
        elif verdict == TIMEOUT:
            form = normalise(found[0])
            reason = (
                f"answer or gold longer than {MAX_ANSWER_CHARS} characters, not verified"
                if max(len(form), len(gold)) > MAX_ANSWER_CHARS
                else f"verification did not finish within {self.timeout:g} s (or the verifier failed)"
            )
        elif verdict == "incorrect":
            reason = "answer differs from the gold answer"
        return Grade(found[0], found[1], verdict, verdict == "correct", cls, reason)


def _verdict(result: Any) -> str:
    if result == BUDGET:
        return BUDGET
    if result in (TIMEOUT, ERROR):
        return TIMEOUT
    return "correct" if result else "incorrect"


def _task_name(task: Any) -> str:
    if task is None:
        return ""
    return task if isinstance(task, str) else str(getattr(task, "name", ""))
