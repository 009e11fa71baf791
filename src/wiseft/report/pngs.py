"""The report's figures rendered to PNG bytes, on two cores where the machine has them.

Rendering (matplotlib's Agg canvas and the PNG encoder) is single-threaded and is most of a report's time.
`render_pngs` forks one child process that renders every other figure into a temporary file while this
process renders the rest; PNG bytes do not depend on which process drew them, so the report is the same
bytes either way (tested). The child touches nothing but its figures and that file, and exits with
`os._exit`. If it fails or outlives `timeout`, this process renders its figures too, so a report never
depends on the child. Without `os.fork` (or on one core) everything is rendered here.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping

from wiseft.report.plots import render_png

CHILD_TIMEOUT_S = 300.0


def render_pngs(
    figs: Mapping[str, object], dpi: int = 110, workers: int | None = None, timeout: float = CHILD_TIMEOUT_S
) -> dict[str, bytes]:
    """PNG bytes of each figure, by name in the order of `figs`; `workers` (default: up to 2 cores) > 1
    renders every other figure in a forked child."""
    names = list(figs)
    workers = min(2, _cores()) if workers is None else workers
    if workers < 2 or len(names) < 2 or not hasattr(os, "fork") or sys.platform != "linux":
        return {name: render_png(figs[name], dpi) for name in names}
    theirs = names[1::2]
    with tempfile.TemporaryFile() as spool:
        pid = os.fork()
        if pid == 0:  # the child: render its half into the spool, then leave without any cleanup
            code = 1
            try:
                for name in theirs:
                    png = render_png(figs[name], dpi)
                    spool.write(len(png).to_bytes(8, "little") + png)
                spool.flush()
                code = 0
            finally:
                os._exit(code)
        out = {name: render_png(figs[name], dpi) for name in names[0::2]}
        got = _child_pngs(pid, spool, len(theirs), timeout)
    for name, png in zip(theirs, got or [render_png(figs[n], dpi) for n in theirs], strict=True):
        out[name] = png
    return {name: out[name] for name in names}


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
