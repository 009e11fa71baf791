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

The "int" kind (the toy task) compares integers exactly and never starts a worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from wiseft.errors import GradingError
from wiseft.grading.extract import extract_answer, normalise
from wiseft.grading.pool import ERROR, TIMEOUT, VerifierPool

VERDICTS = ("correct", "incorrect", "no_answer", "timeout")
MAX_ANSWER_CHARS = 5000  # longer "answers" are not sent to the verifier: verdict "timeout"
_INT = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d*)\.(\d+)")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH = re.compile(r"([+-]?\d+)/(\d+)")


@dataclass(frozen=True)
class Grade:
    """The grade of one sample; `reason` says why it is not correct (no answer, timeout, …)."""

    answer: str | None
    extraction: str | None
    verdict: str
    correct: bool
    answer_class: int
    reason: str | None = None


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


def _exact_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_short) for a plain exact number, else None. Long decimals are left to the verifier,
    whose numeric comparison rounds."""
    if _INT.fullmatch(s):
        return Fraction(int(s)), len(s) <= 15
    m = _DECIMAL.fullmatch(s)
    if m:
        return Fraction(s), len(m.group(2)) < 6
    m = _FRAC.fullmatch(s) or _SLASH.fullmatch(s)
    if m:
        *sign, num, den = m.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return (-value if sign and sign[0] == "-" else value), True
    return None


def _int_value(s: str) -> int | None:
    s = s.replace(",", "").replace("\\$", "").replace("$", "").strip()
    if _INT.fullmatch(s):
        return int(s)
    m = _DECIMAL.fullmatch(s)
    if m and set(m.group(2)) == {"0"}:  # "18.00"
        return int(Fraction(s))
    return None


class Grader:
    """Grades completions against gold answers. A context manager: `close()` stops the workers."""

    def __init__(self, kind: str = "math", workers: int | None = None, timeout: float = 5.0):
        if kind not in ("math", "int"):
            raise GradingError(f"grader kind must be 'math' or 'int', got {kind!r}")
        self.kind = kind
        self.timeout = float(timeout)
        self.pool = VerifierPool(workers=workers, timeout=timeout) if kind == "math" else None
        self._verdicts: dict[tuple[str, str, str], str] = {}
        self._same: dict[tuple[str, str, str], bool] = {}
        self.stats = GradingStats()
        if kind == "math":
            from importlib import metadata

            self.name = f"math-verify=={metadata.version('math-verify')}"
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

    def verify_many(self, pairs: Sequence[tuple[str, str]], task: Any = None) -> list[str]:
        """Verdicts of (gold, normalised answer) pairs, from the cache or one verification per new pair."""
        out: list[str | None] = [None] * len(pairs)
        fresh = self._lookup(pairs, task, self._verdicts, out, counts_as_pair=True)
        if fresh:
            keys = list(fresh)
            results = self._call([(k[1], k[2]) for k in keys], [k[1] for k in keys])
            for key, result in zip(keys, results, strict=True):
                verdict = TIMEOUT if result in (TIMEOUT, ERROR) else ("correct" if result else "incorrect")
                self._verdicts[key] = verdict
                for i in fresh[key]:
                    out[i] = verdict
        return out  # type: ignore[return-value]

    def same_answer(
        self, pairs: Sequence[tuple[str, str]], task: Any = None, affinity: Sequence[str] | None = None
    ) -> list[bool]:
        """Whether each pair of normalised answers is equivalent (first one read as the reference).

        `affinity` (e.g. each pair's gold) sends pairs of one problem to the same worker."""
        out: list[bool | None] = [None] * len(pairs)
        fresh = self._lookup(pairs, task, self._same, out, counts_as_pair=False)
        if fresh:
            keys = list(fresh)
            route = [affinity[fresh[k][0]] if affinity is not None else k[1] for k in keys]
            self.stats.class_calls += sum(len(b) <= MAX_ANSWER_CHARS for _, _, b in keys)
            for key, result in zip(keys, self._call([(k[1], k[2]) for k in keys], route), strict=True):
                self._same[key] = result is True
                for i in fresh[key]:
                    out[i] = result is True
        return out  # type: ignore[return-value]

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
            x, y = _int_value(a), _int_value(b)
            self.stats.numeric += 1
            return x is not None and x == y
        if len(b) > MAX_ANSWER_CHARS:
            return None
        x, y = _exact_number(a), _exact_number(b)
        if x is not None and y is not None:
            if x[0] == y[0]:
                self.stats.numeric += 1
                return True
            if x[1] and y[1]:
                self.stats.numeric += 1
                return False
        return None

    def _call(self, pairs: list[tuple[str, str]], affinity: list[str]) -> list:
        """Math-Verify on pairs that no shortcut decided; overlong answers are not sent at all."""
        results: list = [TIMEOUT] * len(pairs)
        send = [i for i, (_, b) in enumerate(pairs) if len(b) <= MAX_ANSWER_CHARS]
        if send:
            self.stats.verifier_calls += len(send)
            answers = self.pool.run([pairs[i] for i in send], keys=[affinity[i] for i in send])
            for i, r in zip(send, answers, strict=True):
                results[i] = r
            self.stats.worker_restarts = self.pool.restarts
        self.stats.timeouts += sum(r == TIMEOUT for r in results)
        self.stats.errors += sum(r == ERROR for r in results)
        return results

    # --------------------------------------------------------------------------------------- classes

    def classify(self, answers: Sequence[str | None], gold: str | None = None, task: Any = None) -> list[int]:
        """Answer classes of one problem's answers (−1 for None), numbered by first appearance.

        With `gold`, answers verified correct share one class without comparing them with each other.
        """
        forms = [normalise(a) if a is not None else None for a in answers]
        distinct = list(dict.fromkeys(f for f in forms if f is not None))
        verdicts = (
            dict(zip(distinct, self.verify(gold, distinct, task), strict=True)) if gold is not None else {}
        )
        return self._classes([(gold or "", forms, distinct, verdicts)], task)[0]

    def _classes(self, problems: list[tuple], task) -> list[list[int]]:
        """Answer classes for many problems at once: (affinity, forms, distinct forms, verdicts) each.

        Greedy, in order of first appearance: each answer not yet placed is compared with the
        representatives of the wrong-answer classes so far. The problems advance in lockstep rounds so
        that every round's comparisons, across all problems, go to the workers as one batch.
        """
        states = []
        for affinity, _forms, distinct, verdicts in problems:
            rep_of: dict[str, str] = {}
            gold_rep = None
            for f in distinct:
                if verdicts.get(f) == "correct":
                    gold_rep = gold_rep or f
                    rep_of[f] = gold_rep
                elif verdicts.get(f) == TIMEOUT or len(f) > MAX_ANSWER_CHARS:
                    rep_of[f] = f  # unverifiable: alone (comparing it would time out again)
            pending = [f for f in distinct if f not in rep_of]
            states.append({"affinity": affinity, "rep_of": rep_of, "reps": [], "pending": pending})
        while any(st["pending"] for st in states):
            pairs, owner, route = [], [], []
            for n, st in enumerate(states):
                if st["pending"]:
                    f = st["pending"][0]
                    for r in st["reps"]:
                        pairs.append((r, f))
                        owner.append(n)
                        route.append(st["affinity"])
            same = self.same_answer(pairs, task, affinity=route) if pairs else []
            hits: dict[int, str] = {}
            for (r, _), n, eq in zip(pairs, owner, same, strict=True):
                if eq and n not in hits:
                    hits[n] = r
            for n, st in enumerate(states):
                if st["pending"]:
                    f = st["pending"].pop(0)
                    st["rep_of"][f] = hits.get(n, f)
                    if n not in hits:
                        st["reps"].append(f)
        out = []
        for (_, forms, _, _), st in zip(problems, states, strict=True):
            numbering: dict[str, int] = {}
            classes = []
            for f in forms:
                if f is None:
                    classes.append(-1)
                    continue
                rep = st["rep_of"][f]
                if rep not in numbering:
                    numbering[rep] = len(numbering)
                classes.append(numbering[rep])
            out.append(classes)
        return out

    # ------------------------------------------------------------------------------------------ grade

    def grade(
        self,
        items: Sequence[tuple[str, str]],
        task: Any = None,
        problem_ids: Sequence[str] | None = None,
    ) -> list[Grade]:
        """Grade (gold, completion) items. Answer classes are per problem: items are grouped by
        `problem_ids` when given, else by gold answer."""
        if problem_ids is not None and len(problem_ids) != len(items):
            raise GradingError(f"grade: {len(items)} items but {len(problem_ids)} problem ids")
        groups = list(problem_ids) if problem_ids is not None else [g for g, _ in items]
        extracted: list[tuple[str, str] | None] = []
        for gold, completion in items:
            if not isinstance(completion, str) or not isinstance(gold, str):
                raise GradingError("grade: every item must be a (gold: str, completion: str) pair")
            found = self.extract(completion, task)
            extracted.append(found)
            self.stats.samples += 1
            if found is None:
                self.stats.no_answer += 1
            else:
                self.stats.rules[found[1]] = self.stats.rules.get(found[1], 0) + 1
        # Answers repeat heavily: normalise each distinct string once.
        form_of = {a: normalise(a) for a in {f[0] for f in extracted if f}}
        forms = [form_of[f[0]] if f else None for f in extracted]
        golds = {g: normalise(g) for g in {g for g, _ in items}}
        # One verification per distinct (gold, answer) of the whole batch, so workers see it all at once.
        pairs = list(
            dict.fromkeys((golds[g], f) for (g, _), f in zip(items, forms, strict=True) if f is not None)
        )
        verdict_of = dict(zip(pairs, self.verify_many(pairs, task), strict=True))
        by_group: dict[Any, list[int]] = {}
        for i, key in enumerate(groups):
            by_group.setdefault(key, []).append(i)
        classes = [-1] * len(items)
        problems = []
        for idx in by_group.values():
            gold = golds[items[idx[0]][0]]
            f_list = [forms[i] for i in idx]
            distinct = list(dict.fromkeys(f for f in f_list if f is not None))
            problems.append((gold, f_list, distinct, {f: verdict_of[(gold, f)] for f in distinct}))
        for idx, found in zip(by_group.values(), self._classes(problems, task), strict=True):
            for i, c in zip(idx, found, strict=True):
                classes[i] = c
        out = []
        for i, ((gold, _), found) in enumerate(zip(items, extracted, strict=True)):
            if found is None:
                out.append(
                    Grade(None, None, "no_answer", False, -1, "no final answer found in the completion")
                )
                continue
            verdict = verdict_of[(golds[gold], forms[i])]
            reason = None
            if verdict == TIMEOUT:
                reason = (
                    f"answer longer than {MAX_ANSWER_CHARS} characters, not verified"
                    if len(forms[i]) > MAX_ANSWER_CHARS
                    else f"verification did not finish within {self.timeout:g} s (or the verifier failed)"
                )
            elif verdict == "incorrect":
                reason = "answer differs from the gold answer"
            out.append(Grade(found[0], found[1], verdict, verdict == "correct", classes[i], reason))
        return out


def _task_name(task: Any) -> str:
    if task is None:
        return ""
    return task if isinstance(task, str) else str(getattr(task, "name", ""))
