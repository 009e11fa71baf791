"""The Math-Verify side of verification: what runs inside a worker process.

Only Math-Verify's LaTeX extraction is used (antlr-based latex2sympy). Its plain-expression extraction is
left out on purpose: it goes through sympy's `parse_expr`, which calls `eval`, and model text must never
reach `eval`. Math-Verify's own signal-based timeouts are switched off; the pool's watchdog kills a
worker that takes too long instead, which also stops work stuck inside C code (huge integer powers).
"""

from __future__ import annotations

import functools
import logging
from importlib import metadata

from math_verify import parse, verify
from math_verify.parser import LatexExtractionConfig

NAME = "math-verify"
VERSION = metadata.version("math-verify")
# Math-Verify warns on every call that its own timeout is off; the pool provides the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_CONFIG = [LatexExtractionConfig()]


@functools.lru_cache(maxsize=8192)
def parsed(answer: str):
    """Math-Verify's parse of one (already extracted) answer, wrapped in a box so it is read whole."""
    return parse("\\boxed{" + answer + "}", extraction_config=_CONFIG, parsing_timeout=None)


def equivalent(gold: str, answer: str) -> bool:
    """Math-Verify's verdict, gold first (its comparison is not symmetric for every kind of answer)."""
    g, a = parsed(gold), parsed(answer)
    if not g or not a:
        return False
    return bool(verify(g, a, timeout_seconds=None))
