"""The machine a demo runs on: how many threads to take (the cores other work leaves free), how busy the
cores are now, and a clock of wall and CPU seconds per stage (on a busy machine the CPU seconds show what
an idle one would take)."""

from __future__ import annotations

import contextlib
import os
import time


def choose_threads(asked: int, busy_cores: float) -> int:
    """`asked` when given; else the cores that other processes leave free (at least one).

    `busy_cores` is how many cores other work occupies right now (`busy_cores_now`): two intra-op threads
    wait on each other while a core is taken, so a busy core is not counted. The 1-minute load average is
    no guide here: right after another run it still reads high on an idle machine.
    """
    if asked:
        return asked
    cores = os.cpu_count() or 1
    return max(1, min(cores, int(cores - busy_cores + 0.5)))


def busy_cores_now(seconds: float = 0.5) -> float:
    """Cores in use by all processes over the next `seconds` (from /proc/stat via psutil)."""
    import psutil

    return psutil.cpu_percent(interval=seconds) / 100.0 * (os.cpu_count() or 1)


class Clock:
    """Wall and CPU seconds per named stage."""

    def __init__(self):
        self.start = time.perf_counter()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = time.perf_counter() - wall
            self.cpu[name] = time.process_time() - cpu

    def total(self) -> float:
        return time.perf_counter() - self.start
