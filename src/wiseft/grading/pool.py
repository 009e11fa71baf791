"""Worker processes that run Math-Verify with a per-call timeout, a per-problem budget and bounded numbers.

Why processes and a watchdog rather than threads or signals: a pathological answer such as
``9^{9^{9^{9^9}}}`` can sit inside one C call (a big-integer power) that no signal interrupts. Each
worker answers its calls one by one; the parent waits at most `timeout` seconds for the call a worker is
running, and otherwise kills the worker (SIGKILL), records "timeout" for that call, starts a fresh worker
and requeues the worker's other call. A worker also runs under an address-space limit, so a call that
tries to allocate without bound fails with MemoryError (recorded as "error") instead of taking the
machine down.

Scheduling: each worker holds at most `DEPTH` calls (one running, one waiting in its pipe), so the pool
decides every call just before it runs. Calls go first to the worker of their routing key (the grader
uses the problem, whose parses that worker caches), and an idle worker takes calls one at a time from the
busiest queue, so the calls of one slow problem run on every worker. With a `Budget`, every call's verifier time is charged to its group (a problem); once a
group has spent its budget its remaining calls are not run and get the result "budget". A group can
overrun its budget by at most `DEPTH` calls per worker, each bounded by `timeout`.

Lifetime: workers die with the process that started them. On Linux each worker asks the kernel for
SIGKILL when its parent goes (`prctl(PR_SET_PDEATHSIG)`; the kernel sends it when the *thread* that
started the worker exits, so workers are always started from the main thread or from one long-lived
spawner thread); everywhere, a watcher thread in the worker exits when its parent PID changes, and the
worker exits at the end of its input.

Workers are plain subprocesses (`python -m wiseft.grading.worker`) speaking JSON lines over their stdin
and stdout: nothing is pickled, the parent (which may hold torch and its threads) is never forked, and
the caller's `__main__` is never re-imported (as multiprocessing's spawn would do).

Limits (refused with a ConfigError naming the flag; the checks live in the leaf `wiseft.limits`):
`--workers` at most `MAX_WORKERS` (and capped at `WORKERS_PER_CORE` × cores), `--timeout` finite in
(0, `MAX_TIMEOUT`], the per-problem budget finite in (0, `MAX_BUDGET`].
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Hashable, Sequence
from pathlib import Path

from wiseft.errors import GradingError
from wiseft.limits import check_budget, check_timeout, check_workers

MEMORY_LIMIT_BYTES = 4 * 1024**3
START_TIMEOUT = 120.0  # seconds for a worker to import Math-Verify and warm up, even on a loaded machine
WORKERS_PER_CORE = 4  # more verifier processes than this per core only thrash
DEPTH = 2  # calls handed to one worker at a time: the one it runs and the next
PIPELINE_BYTES = 16 * 1024  # a call is queued behind a running one only if its line fits a pipe buffer
TIMEOUT, ERROR, BUDGET = "timeout", "error", "budget"
# A result is True / False (equivalent or not), TIMEOUT, ERROR (the call raised or the worker died) or
# BUDGET (not run: its group's budget was spent).


# ------------------------------------------------------------------------------------------- limits


def worker_count(requested: int | None) -> int:
    """Processes actually started: the request (default: one per core), at most WORKERS_PER_CORE × cores."""
    cores = os.cpu_count() or 1
    return max(1, min(requested or cores, WORKERS_PER_CORE * cores))


class Budget:
    """Seconds of verifier time each group may use; `spent` holds what each group used so far."""

    def __init__(self, seconds: float):
        self.seconds = check_budget(seconds)
        self.spent: dict[Hashable, float] = {}

    def charge(self, group: Hashable, seconds: float) -> None:
        self.spent[group] = self.spent.get(group, 0.0) + max(0.0, seconds)

    def exhausted(self, group: Hashable) -> bool:
        return self.spent.get(group, 0.0) >= self.seconds

    def exhausted_groups(self) -> list:
        return [g for g, s in self.spent.items() if s >= self.seconds]


# ------------------------------------------------------------------------------------------ workers

_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _popen(cmd: list[str], env: dict) -> subprocess.Popen:
    """Start a worker from a thread that lives as long as this process, so that PR_SET_PDEATHSIG (tied
    to the starting thread) fires when the process dies and not when a short-lived thread ends."""
    global _SPAWNER

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )

    if threading.current_thread() is threading.main_thread():
        return start()
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wiseft-spawner")
    return _SPAWNER.submit(start).result()


class _Worker:
    def __init__(self, memory_limit: int | None):
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "wiseft.grading.worker", "--parent", str(os.getpid())]
        if memory_limit:
            cmd += ["--memory", str(memory_limit)]
        self.process = _popen(cmd, env)
        self.fd = self.process.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.started = time.monotonic()
        self.queue: collections.deque = collections.deque()  # calls sent and not yet answered
        self.since = 0.0  # when the call at the head of the queue started
        self.deadline = 0.0

    def send(self, calls: list) -> None:
        self.process.stdin.write(json.dumps(calls).encode() + b"\n")
        self.process.stdin.flush()

    def read(self) -> list | None:
        """Answers available now; None when the worker has died (end of file)."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not data:
            return None
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        answers = []
        for line in lines:
            if not line:
                continue
            message = json.loads(line)
            if message == ["ready"]:
                self.ready = True
            else:
                answers.append(message)
        return answers

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        try:
            self.process.stdin.close()  # end of input: the worker exits
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


# -------------------------------------------------------------------------------------------- batch


class _Batch:
    """The calls of one `run`: per-worker queues of calls not sent yet, results, budget accounting."""

    def __init__(self, pairs, keys, groups, budget: Budget | None, n_workers: int, chunk_size: int):
        self.results: list = [None] * len(pairs)
        self.groups = groups
        self.budget = budget if groups is not None else None
        self.todo: list[collections.deque] = [collections.deque() for _ in range(n_workers)]
        for i, (gold, answer) in enumerate(pairs):
            key = keys[i] if keys is not None else str(i // chunk_size)
            self.todo[zlib.crc32(key.encode()) % n_workers].append([i, gold, answer])

    def pending(self) -> bool:
        return any(self.todo)

    def take(self, n: int, room: int, busy: bool) -> list:
        """Up to `room` calls for worker `n`: its own first, else stolen from the busiest queue. Calls of
        an exhausted group are answered BUDGET here and never sent; with `busy`, only small calls."""
        calls: list = []
        while len(calls) < room:
            source = self.todo[n] if self.todo[n] else max(self.todo, key=len)
            if not source:
                break
            call = source[0] if source is self.todo[n] else source[-1]
            if self.budget is not None and self.budget.exhausted(self.groups[call[0]]):
                self.results[call[0]] = BUDGET
            elif busy and len(call[1]) + len(call[2]) > PIPELINE_BYTES // 8:  # \uXXXX: 6 bytes a char
                break
            else:
                calls.append(call)
            source.popleft() if source is self.todo[n] else source.pop()
        return calls

    def done(self, index: int, result, seconds: float) -> None:
        self.results[index] = result
        if self.budget is not None:
            self.budget.charge(self.groups[index], seconds)


# --------------------------------------------------------------------------------------------- pool


class VerifierPool:
    """`run(pairs)` verifies (gold, answer) pairs in `workers` processes, each call within `timeout` s."""

    def __init__(
        self, workers: int | None = None, timeout: float = 5.0, memory_limit: int | None = MEMORY_LIMIT_BYTES
    ):
        self.n_workers = worker_count(check_workers(workers))
        self.timeout = check_timeout(timeout)
        self.memory_limit = memory_limit
        self._workers: list[_Worker] = []
        self.restarts = 0

    def _start(self, n: int) -> None:
        while len(self._workers) < n:
            self._workers.append(_Worker(self.memory_limit))

    def run(
        self,
        pairs: Sequence[tuple[str, str]],
        keys: Sequence[str] | None = None,
        chunk_size: int = 16,
        groups: Sequence[Hashable] | None = None,
        budget: Budget | None = None,
    ) -> list:
        """Results in the order of `pairs`: True, False, "timeout", "error" or "budget".

        Pairs with the same routing key go to the same worker when it is free, so its parse cache serves
        them (without keys: runs of `chunk_size` consecutive pairs); an idle worker takes calls from the
        busiest one. With `groups` and `budget`, each call's time is charged to its group, and calls of a
        group whose budget is spent are not run (result "budget").
        """
        if not pairs:
            return []
        self._start(self.n_workers)
        batch = _Batch(pairs, keys, groups, budget, len(self._workers), chunk_size)
        selector = selectors.DefaultSelector()
        try:
            while batch.pending() or any(w.queue for w in self._workers):
                self._feed(batch)
                self._wait(batch, selector)
        finally:
            selector.close()
        return batch.results

    def _feed(self, batch: _Batch) -> None:
        """Top up every ready worker to DEPTH calls."""
        now = time.monotonic()
        for n, w in enumerate(self._workers):
            if not w.ready or len(w.queue) >= DEPTH:
                continue
            calls = batch.take(n, DEPTH - len(w.queue), busy=bool(w.queue))
            if not calls:
                continue
            try:
                w.send(calls)
            except OSError:  # the worker died while idle: replace it, keep its calls
                batch.todo[n].extendleft(reversed(calls))
                self._renew(n)
                continue
            if not w.queue:
                w.since, w.deadline = now, now + self.timeout
            w.queue.extend(calls)

    def _wait(self, batch: _Batch, selector: selectors.BaseSelector) -> None:
        """Wait for answers until the nearest deadline; record them; replace stuck or dead workers."""
        for w in self._workers:
            if not w.ready and not w.queue:
                w.deadline = w.started + START_TIMEOUT
        busy = [w for w in self._workers if w.queue or not w.ready]
        if not busy:
            return
        now = time.monotonic()
        for w in busy:
            selector.register(w.fd, selectors.EVENT_READ, w)
        events = selector.select(timeout=max(0.0, min(w.deadline for w in busy) - now))
        for w in busy:
            selector.unregister(w.fd)
        ready = {key.data for key, _ in events}
        now = time.monotonic()
        for w in busy:
            n = self._workers.index(w)
            answers = w.read() if w in ready else []
            if answers is None:
                if not w.queue:
                    raise GradingError(
                        f"a Math-Verify worker exited while starting; check that "
                        f"`{sys.executable} -m wiseft.grading.worker` runs"
                    )
                self._replace(n, ERROR, batch, now)
                continue
            for index, result in answers:
                batch.done(index, result, now - w.since)
                w.queue.popleft()
                w.since, w.deadline = now, now + self.timeout
            if w.queue and now >= w.deadline:
                self._replace(n, TIMEOUT, batch, now)
            elif not w.ready and now >= w.deadline:
                raise GradingError(
                    f"a Math-Verify worker did not start within {START_TIMEOUT:g} s; check that "
                    f"`{sys.executable} -m wiseft.grading.worker` runs"
                )

    def _replace(self, n: int, verdict: str, batch: _Batch, now: float) -> None:
        """Kill a stuck or dead worker: its running call gets `verdict`, its other calls are requeued."""
        w = self._workers[n]
        stuck = w.queue.popleft()
        batch.done(stuck[0], verdict, now - w.since)
        batch.todo[n].extendleft(reversed(w.queue))
        w.queue.clear()
        self._renew(n)

    def _renew(self, n: int) -> None:
        self._workers[n].kill()
        self.restarts += 1
        self._workers[n] = _Worker(self.memory_limit)

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            for w in self._workers:
                w.kill()
        except Exception:
            pass
