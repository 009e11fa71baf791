"""A verification worker: `python -m wiseft.grading.worker --parent PID [--memory BYTES]`.

Writes `["ready"]` once warmed up, then reads JSON lines from stdin, each a list of calls
`[[index, gold, answer], …]`, and writes one JSON line `[index, result]` per call as soon as it is done
(result: true, false or "error"). Exits at end of input. The parent (`wiseft.grading.pool`) owns
timeouts: it kills this process when a call takes too long.

The worker never outlives its parent: on Linux it asks for SIGKILL when the parent dies
(`prctl(PR_SET_PDEATHSIG)`, which also stops a call stuck inside C code); where that is not available a
watcher thread exits when the parent PID is no longer `--parent` (it cannot interrupt a C call that
holds the GIL); everywhere, the loop checks the parent between calls and exits at the end of its input.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


def die_with_parent(parent: int) -> None:
    """Arrange to exit when process `parent` is gone; exit now if it already is."""
    armed = _pdeathsig()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
    if not armed:  # no prctl (not Linux): a thread watches the parent instead
        threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()


def _pdeathsig() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); whether that worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(0)


def _limit_memory(limit: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


def _options(argv: list[str]) -> dict[str, int]:
    opts = {}
    for flag, value in zip(argv[::2], argv[1::2], strict=False):
        opts[flag.lstrip("-")] = int(value)
    return opts


def main(argv: list[str]) -> int:
    opts = _options(argv)
    parent = opts.get("parent", os.getppid())
    die_with_parent(parent)
    if opts.get("memory"):
        _limit_memory(opts["memory"])
    # Math-Verify (seconds to import) loads only once the worker dies with its parent and is held to its
    # memory limit (tests import its helpers without it).
    from wiseft.grading import mathverify

    out = sys.stdout
    # Warm up (the first parse loads the LaTeX grammar), then tell the parent: its per-call timeout
    # starts only once this process is ready, so start-up never counts as a slow call.
    mathverify.equivalent("\\frac{1}{2}", "0.5")
    mathverify.parsed.cache_clear()
    out.write('["ready"]\n')
    out.flush()
    for line in sys.stdin:
        for index, gold, answer in json.loads(line):
            if os.getppid() != parent:
                return 0
            out.write(json.dumps([index, _verify(mathverify, gold, answer)]) + "\n")
            out.flush()
    return 0


def _verify(mathverify, gold: str, answer: str):
    try:
        return mathverify.equivalent(gold, answer)
    except MemoryError:
        mathverify.parsed.cache_clear()
        return "error"
    except Exception:  # a call that cannot be verified is a result, never a crash of the run
        return "error"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
