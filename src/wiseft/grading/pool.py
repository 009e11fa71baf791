"""Worker processes that run Math-Verify with a per-call timeout.

Why processes and a watchdog rather than threads or signals: a pathological answer such as
``9^{9^{9^{9^9}}}`` can sit inside one C call (a big-integer power) that no signal interrupts. Each
worker answers every call of its chunk as soon as it is done; the parent waits at most `timeout` seconds
for the next answer, and otherwise kills the worker (SIGKILL), records "timeout" for that call, starts a
fresh worker and hands it the rest of the chunk. A worker also runs under an address-space limit, so a
call that tries to allocate without bound fails with MemoryError (recorded as "error") instead of
taking the machine down.

Workers are plain subprocesses (`python -m wiseft.grading.worker`) speaking JSON lines over their stdin
and stdout: nothing is pickled, the parent (which may hold torch and its threads) is never forked, and
the caller's `__main__` is never re-imported (as multiprocessing's spawn would do).
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import subprocess
import sys
import time
import zlib
from pathlib import Path

from wiseft.errors import GradingError

MEMORY_LIMIT_BYTES = 4 * 1024**3
START_TIMEOUT = 120.0  # seconds for a worker to import Math-Verify and warm up, even on a loaded machine
TIMEOUT, ERROR = "timeout", "error"
# A result is True / False (equivalent or not), TIMEOUT, or ERROR (the call raised or the worker died).


class _Worker:
    def __init__(self, memory_limit: int | None):
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "wiseft.grading.worker"]
        if memory_limit:
            cmd.append(str(memory_limit))
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        self.fd = self.process.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.started = time.monotonic()
        self.queue: collections.deque = collections.deque()  # calls sent and not yet answered
        self.deadline = 0.0

    def send(self, chunk: list) -> None:
        self.process.stdin.write(json.dumps(chunk).encode() + b"\n")
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


class VerifierPool:
    """`run(pairs)` verifies (gold, answer) pairs in `workers` processes, each call within `timeout` s."""

    def __init__(
        self, workers: int | None = None, timeout: float = 5.0, memory_limit: int | None = MEMORY_LIMIT_BYTES
    ):
        if workers is not None and workers < 1:
            raise GradingError(f"--workers must be at least 1, got {workers}")
        if timeout <= 0:
            raise GradingError(f"--timeout must be positive seconds, got {timeout}")
        self.n_workers = workers or os.cpu_count() or 1
        self.timeout = float(timeout)
        self.memory_limit = memory_limit
        self._workers: list[_Worker] = []
        self.restarts = 0

    def _start(self, n: int) -> None:
        while len(self._workers) < n:
            self._workers.append(_Worker(self.memory_limit))

    def run(self, pairs: list[tuple[str, str]], keys: list[str] | None = None, chunk_size: int = 16) -> list:
        """Results in the order of `pairs`: True, False, "timeout" or "error".

        Pairs with the same affinity key (e.g. the gold answer of a problem) go to the same worker when
        it is free, so its parse cache serves them; an idle worker takes work from the busiest one.
        """
        results: list = [None] * len(pairs)
        if not pairs:
            return results
        self._start(self.n_workers)
        workers = self._workers
        slots: list[list[int]] = [[] for _ in workers]
        for i in range(len(pairs)):
            key = keys[i] if keys is not None else str(i // chunk_size)
            slots[zlib.crc32(key.encode()) % len(workers)].append(i)
        todo = [
            collections.deque(
                [[i, *pairs[i]] for i in slot[s : s + chunk_size]] for s in range(0, len(slot), chunk_size)
            )
            for slot in slots
        ]
        selector = selectors.DefaultSelector()
        try:
            while any(todo) or any(w.queue for w in workers):
                now = time.monotonic()
                for n, w in enumerate(workers):
                    if w.queue or not w.ready:
                        continue
                    if todo[n]:
                        chunk = todo[n].popleft()
                    elif any(todo):
                        chunk = max(todo, key=len).pop()  # steal from the busiest
                    else:
                        continue
                    try:
                        w.send(chunk)
                    except OSError:  # the worker died while idle: replace it, keep the chunk
                        todo[n].appendleft(chunk)
                        w.kill()
                        self.restarts += 1
                        self._workers[n] = _Worker(self.memory_limit)
                        continue
                    w.queue.extend(chunk)
                    w.deadline = now + self.timeout
                for w in workers:
                    if not w.ready and not w.queue:
                        w.deadline = w.started + START_TIMEOUT
                busy = [w for w in workers if w.queue or not w.ready]
                if not busy:
                    continue
                for w in busy:
                    selector.register(w.fd, selectors.EVENT_READ, w)
                events = selector.select(timeout=max(0.0, min(w.deadline for w in busy) - now))
                for w in busy:
                    selector.unregister(w.fd)
                ready = {key.data for key, _ in events}
                now = time.monotonic()
                for w in busy:
                    answers = w.read() if w in ready else []
                    n = workers.index(w)
                    if answers is None:
                        if not w.queue:
                            raise GradingError(
                                f"a Math-Verify worker exited while starting; check that "
                                f"`{sys.executable} -m wiseft.grading.worker` runs"
                            )
                        self._replace(n, ERROR, results, todo[n])
                        continue
                    for index, result in answers:
                        results[index] = result
                        w.queue.popleft()
                        w.deadline = now + self.timeout
                    if w.queue and now >= w.deadline:
                        self._replace(n, TIMEOUT, results, todo[n])
                    elif not w.ready and now >= w.deadline:
                        raise GradingError(
                            f"a Math-Verify worker did not start within {START_TIMEOUT:g} s; check that "
                            f"`{sys.executable} -m wiseft.grading.worker` runs"
                        )
        finally:
            selector.close()
        return results

    def _replace(self, n: int, verdict: str, results: list, todo: collections.deque) -> None:
        """Kill a stuck or dead worker: its current call gets `verdict`, the rest of its chunk is requeued."""
        w = self._workers[n]
        stuck = w.queue.popleft()
        results[stuck[0]] = verdict
        if w.queue:
            todo.appendleft(list(w.queue))
        w.kill()
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
