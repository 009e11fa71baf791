"""Recipe rule regexes, run in linear time.

A recipe is untrusted input, and Python's `re` backtracks: `(a|aa)*(.|..)*(x+x+)+y` against a long tensor
name runs for ever. Rule patterns are therefore compiled and full-matched by RE2 (`google-re2`), whose
time is linear in the name whatever the pattern. RE2 accepts Python's syntax except backreferences
(`\\1`, `(?P=name)`) and lookaround (`(?=…)`, `(?!…)`, `(?<=…)`, `(?<!…)`), which need backtracking;
a pattern using them is refused with a ConfigError naming the rule. Patterns are also bounded in length
(`MAX_PATTERN_CHARS`) and in compiled size (RE2's `max_mem`).
"""

from __future__ import annotations

import functools
from typing import Any

from wiseft.errors import ConfigError

MAX_PATTERN_CHARS = 1000
MAX_PROGRAM_BYTES = 8 * 1024**2  # RE2's memory budget for one compiled pattern
RE2_PIN = "google-re2==1.1.20251105"
_BACKTRACKING = ("(?=", "(?!", "(?<=", "(?<!", "(?P=")


def _re2() -> Any:
    try:
        import re2
    except ImportError as exc:
        raise ConfigError(
            f"recipe rules need the RE2 regex engine; install it with `pip install {RE2_PIN}`"
        ) from exc
    return re2


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    re2 = _re2()
    options = re2.Options()
    options.log_errors = False  # RE2 would print parse errors on stderr; we raise them instead
    options.max_mem = MAX_PROGRAM_BYTES
    return re2.compile(pattern, options)


def compile_rule(pattern: Any) -> Any:
    """The compiled pattern of a recipe rule; ConfigError naming the rule when it cannot be run safely."""
    where = f"rule match {str(pattern)[:100]!r}"
    if not isinstance(pattern, str):
        raise ConfigError(f"{where} must be a string (a regular expression over tensor names)")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ConfigError(
            f"{where} is {len(pattern)} characters long; rule patterns are limited to {MAX_PATTERN_CHARS}"
        )
    try:
        return _compiled(pattern)
    except Exception as exc:  # re2.error; its type lives in a private module
        reason = str(exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc)
        if (
            any(op in pattern for op in _BACKTRACKING)
            or "invalid escape sequence: \\" in reason
            and any(f"\\{d}" in pattern for d in "123456789")
        ):
            raise ConfigError(
                f"{where} is not a valid regular expression for wiseft: backreferences and lookaround are "
                f"not supported (rules run on RE2, in linear time); rewrite the rule without them ({reason})"
            ) from None
        raise ConfigError(f"{where} is not a valid regular expression: {reason}") from None


def fullmatch(pattern: str, name: str) -> bool:
    """Whether `pattern` matches the whole of `name` (linear time in `name`)."""
    return compile_rule(pattern).fullmatch(name) is not None
