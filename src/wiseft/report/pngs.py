"""The report's figures built and rendered to PNG bytes, on two cores where the machine has them.

Building a figure (its constrained layout measures every label) and rendering it (matplotlib's Agg canvas
and the PNG encoder) are single-threaded and most of a report's time. `render_pngs` takes each figure as a
builder (a function that returns the figure, or None when there is nothing to plot) and forks one child
process that builds and renders every other figure into a temporary file while this process does the rest;
PNG bytes do not depend on which process drew them, so the report is the same bytes either way (tested).
The child touches nothing but its figures and that file, and exits with `os._exit`. If it fails or outlives
`timeout`, this process builds and renders its figures too, so a report never depends on the child (and a
builder's own error is raised here). Without `os.fork` (or on one core) everything is done here.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from wiseft.report.plots import render_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHILD_TIMEOUT_S = 300.0


def render_pngs(
    figs: Mapping[str, Figure | Callable[[], Figure | None]], dpi: int = 110, workers: int | None = None,
    timeout: float = CHILD_TIMEOUT_S,
) -> dict[str, bytes]:  # fmt: skip
    """PNG bytes of each figure, by name in the order of `figs`, leaving out builders that returned None;
    a value is a Figure or a builder of one. `workers` (default: up to 2 cores) > 1 builds and renders
    every other figure in a forked child."""
    names = list(figs)

    def png(name: str) -> bytes:
        fig = figs[name]() if callable(figs[name]) else figs[name]
        return b"" if fig is None else render_png(fig, dpi)  # (b"": no figure; a PNG is never empty)

    workers = min(2, _cores()) if workers is None else workers
    if workers < 2 or len(names) < 2 or not hasattr(os, "fork") or sys.platform != "linux":
        return _present({name: png(name) for name in names})
    theirs = names[1::2]
    with tempfile.TemporaryFile() as spool:
        pid = os.fork()
        if pid == 0:  # the child: its half into the spool, then leave without any cleanup
            code = 1
            try:
                for name in theirs:
                    data = png(name)
                    spool.write(len(data).to_bytes(8, "little") + data)
                spool.flush()
                code = 0
            finally:
                os._exit(code)
        out = {name: png(name) for name in names[0::2]}
        got = _child_pngs(pid, spool, len(theirs), timeout)
    for name, data in zip(theirs, got if got is not None else [png(n) for n in theirs], strict=True):
        out[name] = data
    return _present({name: out[name] for name in names})


def _present(pngs: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in pngs.items() if data}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _child_pngs(pid: int, spool, count: int, timeout: float) -> list[bytes] | None:
    """The child's PNGs once it has exited cleanly; None if it failed, wrote too few or ran past `timeout`
    (then it is killed)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    spool.seek(0)
    data, pngs, at = spool.read(), [], 0
    while at + 8 <= len(data) and len(pngs) < count:
        size = int.from_bytes(data[at : at + 8], "little")
        pngs.append(data[at + 8 : at + 8 + size])
        at += 8 + size
    return pngs if len(pngs) == count and at == len(data) else None
