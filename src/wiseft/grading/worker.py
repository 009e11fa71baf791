"""A verification worker: `python -m wiseft.grading.worker [MEMORY_LIMIT_BYTES]`.

Writes `["ready"]` once warmed up, then reads JSON lines from stdin, each a chunk `[[index, gold, answer], …]`, and writes one JSON line
`[index, result]` per call as soon as it is done (result: true, false or "error"). Exits at end of input.
The parent (`wiseft.grading.pool`) owns timeouts: it kills this process when a call takes too long.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if argv:
        try:
            import resource

            limit = int(argv[0])
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
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
            try:
                result = mathverify.equivalent(gold, answer)
            except MemoryError:
                mathverify.parsed.cache_clear()
                result = "error"
            except Exception:  # a call that cannot be verified is a result, never a crash of the run
                result = "error"
            out.write(json.dumps([index, result]) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
