"""Hostile grading inputs: bounded flags, bounded work per problem, workers that die with their parent,
linear-time extraction, exact integers of any length. Flag errors are one line naming the flag, and
`wiseft grade` writes nothing."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from wiseft.cli import main
from wiseft.errors import ConfigError
from wiseft.grading import Grader
from wiseft.grading.extract import extract_answer
from wiseft.grading.pool import BUDGET, DEPTH, TIMEOUT, Budget, _Batch, worker_count
from wiseft.limits import MAX_WORKERS, check_budget, check_timeout, check_workers

SRC = str(Path(__file__).resolve().parents[1] / "src")

# ---------------------------------------------------------------------------------------- flag limits

BAD_FLAGS = [
    # (id, validator, value, flag, fragment)
    ("timeout-nan", check_timeout, float("nan"), "--timeout", "finite, > 0"),
    ("timeout-inf", check_timeout, float("inf"), "--timeout", "finite, > 0"),
    ("timeout-zero", check_timeout, 0, "--timeout", "finite, > 0"),
    ("timeout-negative", check_timeout, -5, "--timeout", "finite, > 0"),
    ("timeout-huge", check_timeout, 1e9, "--timeout", "the limit is 3600 s"),
    ("timeout-text", check_timeout, "soon", "--timeout", "must be a number of seconds"),
    ("timeout-bool", check_timeout, True, "--timeout", "finite, > 0"),
    ("budget-nan", check_budget, "nan", "--problem-budget", "finite, > 0"),
    ("budget-inf", check_budget, "inf", "--problem-budget", "finite, > 0"),
    ("budget-huge", check_budget, 1e7, "--problem-budget", "the limit is 86400 s"),
    ("workers-zero", check_workers, 0, "--workers", "at least 1"),
    ("workers-negative", check_workers, -3, "--workers", "at least 1"),
    ("workers-500", check_workers, 500, "--workers", f"the limit is {MAX_WORKERS}"),
    ("workers-float", check_workers, 2.5, "--workers", "whole number"),
    ("workers-bool", check_workers, True, "--workers", "whole number"),
]  # fmt: skip


@pytest.mark.parametrize(
    "check,value,flag,fragment", [c[1:] for c in BAD_FLAGS], ids=[c[0] for c in BAD_FLAGS]
)
def test_flag_limits_are_one_line_naming_the_flag(check, value, flag, fragment):
    with pytest.raises(ConfigError) as info:
        check(value)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(flag) and fragment in msg, msg


def test_good_flags_pass_and_workers_are_capped_per_core(monkeypatch):
    assert check_timeout("0.5") == 0.5 and check_budget(30) == 30.0 and check_workers(None) is None
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert [worker_count(n) for n in (None, 1, 8, 64)] == [2, 1, 8, 8]


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--timeout", "nan"], "--timeout must be positive"),
        (["--timeout", "inf"], "--timeout must be positive"),
        (["--timeout", "-1"], "--timeout must be positive"),
        (["--workers", "500"], "--workers is 500; the limit is"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_grade_refuses_bad_flags_and_writes_nothing(tmp_path, capsys, flags, fragment):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"problem_id": "0", "sample_idx": 0, "completion": "\\boxed{1}"}) + "\n")
    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"id": "0", "question": "q", "answer": "1"}) + "\n")
    capsys.readouterr()
    code = main(["grade", str(samples), "--task", "jsonl", "--data", str(task), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl", "t.jsonl"]


# ------------------------------------------------------------------- bounded work, with a fake verifier


class FakePool:
    """Stands in for VerifierPool: a table of results and of seconds each call costs; honours budgets."""

    def __init__(self, results: dict, cost: dict | None = None, default=False):
        self.results, self.cost, self.default = results, cost or {}, default
        self.calls: list[tuple] = []
        self.keys: list[list] = []
        self.restarts = 0

    def run(self, pairs, keys=None, chunk_size=16, groups=None, budget=None):
        self.keys.append(list(keys))
        out = []
        for i, pair in enumerate(pairs):
            group = groups[i] if groups is not None else None
            if budget is not None and budget.exhausted(group):
                out.append(BUDGET)
                continue
            self.calls.append(pair)
            out.append(self.results.get(pair, self.default))
            if budget is not None:
                budget.charge(group, self.cost.get(pair, 0.01))
        return out

    def close(self):
        pass


def fake_grader(pool: FakePool, **kwargs) -> Grader:
    g = Grader(kind="math", workers=1, **kwargs)
    g.pool = pool
    return g


TOWERS = [f"9^{{9^{{9^{{{k}}}}}}}" for k in range(2, 14)]  # twelve distinct power towers


def test_a_problem_stops_at_its_budget():
    """Twelve answers whose every call times out: the problem spends its budget, then nothing more runs."""
    pool = FakePool({}, cost={("5", t): 5.0 for t in TOWERS}, default=TIMEOUT)
    g = fake_grader(pool, timeout=5.0, problem_budget=20.0)
    grades = g.grade([("5", f"\\boxed{{{t}}}") for t in TOWERS], task="t", problem_ids=["p"] * 12)
    assert len(pool.calls) == 4  # 4 × 5 s = the 20 s budget; the other 8 are not sent
    assert [x.verdict for x in grades] == ["timeout"] * 12
    assert sum("verification budget of 20 s" in x.reason for x in grades) == 8
    assert sorted(x.answer_class for x in grades) == list(range(12))  # unverifiable: each alone
    assert (g.stats.budget_skipped, g.stats.budget_problems) == (8, 1)


def test_budget_is_per_problem_and_not_cached():
    pool = FakePool({("7", "x+1"): False}, cost={("5", t): 5.0 for t in TOWERS}, default=TIMEOUT)
    g = fake_grader(pool, timeout=5.0, problem_budget=10.0)
    items = [("5", f"\\boxed{{{t}}}") for t in TOWERS[:4]] + [("7", "\\boxed{7}"), ("7", "\\boxed{x+1}")]
    grades = g.grade(items, task="t", problem_ids=["p"] * 4 + ["q"] * 2)
    assert [x.verdict for x in grades[4:]] == ["correct", "incorrect"]  # q is untouched by p's budget
    assert len(pool.calls) == 3  # p: 2 calls (10 s), q: 1 call
    g.grade(items[:4], task="t", problem_ids=["p"] * 4)  # a new batch: a fresh budget, skipped ones retried
    assert len(pool.calls) == 5


def test_timed_out_comparison_makes_answers_distinct_and_is_not_a_representative():
    answers = ["a", "b", "c", "d"]  # all wrong; b vs a times out; c equals b, d equals a
    results = {("g", x): False for x in answers}
    results |= {("a", "b"): TIMEOUT, ("a", "c"): False, ("a", "d"): True, ("b", "c"): True}
    pool = FakePool(results)
    g = fake_grader(pool)
    grades = g.grade([("g", f"\\boxed{{{a}}}") for a in answers], task="t", problem_ids=["p"] * 4)
    assert [x.answer_class for x in grades] == [0, 1, 2, 0]  # b alone; c not compared with b
    assert ("b", "c") not in pool.calls and ("b", "d") not in pool.calls


def test_one_problems_calls_are_spread_over_idle_workers():
    """All calls routed to one worker's queue are taken, one at a time, by every idle worker."""
    pairs = [("g", f"x+{i}") for i in range(6)]
    batch = _Batch(pairs, ["p"] * 6, None, None, n_workers=3, chunk_size=16)
    assert sorted(len(q) for q in batch.todo) == [0, 0, 6]
    taken = [batch.take(n, DEPTH, busy=False) for n in range(3)]
    assert [len(t) for t in taken] == [DEPTH] * 3 and not batch.pending()


def test_power_towers_finish_within_the_budget_with_real_workers():
    """The issue's case, with a small timeout: twelve power towers on one problem, real verifier workers."""
    with Grader(kind="math", workers=2, timeout=0.5, problem_budget=1.0) as g:
        grades = g.grade([("5", f"\\boxed{{{t}}}") for t in TOWERS], task="towers", problem_ids=["p"] * 12)
        assert [x.verdict for x in grades] == ["timeout"] * 12
        assert sorted(x.answer_class for x in grades) == list(range(12))
        bound = math.ceil(1.0 / 0.5) + DEPTH * 2  # budget / timeout, plus the calls already in flight
        assert g.stats.timeouts <= bound and g.pool.restarts <= bound
        assert g.stats.budget_skipped >= 12 - bound and g.stats.budget_problems == 1


# ------------------------------------------------------------------------ processes die with the parent

PARENT = textwrap.dedent(
    r"""
    import sys, threading
    from wiseft.grading.pool import VerifierPool
    pool = VerifierPool(workers=2, timeout=600)
    def start():
        pool._start(2)
    if sys.argv[1] == "thread":  # started from a short-lived thread: the spawner thread keeps PDEATHSIG
        t = threading.Thread(target=start); t.start(); t.join()
    else:
        start()
    assert pool.run([("\\frac{1}{2}", "0.5")] * 4) == [True] * 4  # both workers ready and working
    print(" ".join(str(w.process.pid) for w in pool._workers), flush=True)
    pool.run([("5", f"9^{{9^{{9^{{{k}}}}}}}") for k in range(6, 10)])  # never finishes: stuck in C code
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("where", ["main", "thread"])
def test_workers_die_when_their_parent_is_killed(where):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, where], stdout=subprocess.PIPE, env=env)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(1)  # both are now inside an endless big-integer power (no stdin read, no signal check)
        assert not any(_gone(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
    finally:
        parent.kill()
        parent.wait()
        for p in pids if "pids" in locals() else []:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


WATCHED_CHILD = textwrap.dedent(
    """
    import os, sys
    from wiseft.grading import worker
    worker._pdeathsig = lambda: False  # as on a system without prctl
    worker.die_with_parent(os.getppid())
    print("watching", flush=True)
    while True:
        sum(range(100_000))  # busy in Python code, like a verification that does not end
    """
)
WATCHED_PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    proc = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=sys.stdout)
    print(proc.pid, flush=True)
    time.sleep(600)
    """
)


def test_without_prctl_the_parent_watch_ends_the_worker():
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", WATCHED_PARENT, WATCHED_CHILD]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    pid = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline() == b"watching\n"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid)
    finally:
        parent.kill()
        parent.wait()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-m", "wiseft.grading.worker", "--parent", "1" if os.getpid() != 1 else "2"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == b""  # never said "ready"


# ------------------------------------------------------------------------------ input-sized costs


@pytest.fixture
def no_hang():
    def alarm(*_):
        raise TimeoutError("extraction took quadratic time")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 60)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    "text",
    [
        "####" + " " * 300_000 + "x",
        "#### $" + "\t" * 300_000 + "x",
        "the answer is" + " " * 300_000 + "x",
        "\\boxed{" * 100_000,
        "1," * 300_000,
    ],
    ids=["hash-blanks", "hash-dollar-tabs", "answer-is-blanks", "open-boxes", "commas"],
)
def test_extraction_is_linear_on_pathological_completions(text, no_hang):
    extract_answer(text, last_number=True)


def test_integers_of_any_length_compare_exactly():
    big = "1" * 5000
    with Grader(kind="int") as g:
        grades = g.grade([(big, f"\\boxed{{{big}}}"), (big, f"\\boxed{{{big}1}}"), ("18", "\\boxed{18.00}")])
    assert [x.correct for x in grades] == [True, False, True]
    pool = FakePool({}, default=False)
    g = fake_grader(pool)
    grades = g.grade([("5", "\\boxed{" + "9" * 4500 + "}")], task="t")  # Python refuses int() of it
    assert grades[0].verdict == "incorrect" and len(pool.calls) == 1


def test_budget_needs_a_finite_positive_value():
    with pytest.raises(ConfigError, match="--problem-budget must be positive"):
        Budget(float("nan"))
