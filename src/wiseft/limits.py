"""Limits on input-sized costs set by flags, and the checks of those flags (one-line errors that name the
flag). A leaf: the configs that generate the CLI's flags validate with these, so parsing arguments loads
neither the grading pool nor numpy.

- `--n-boot`: bootstrap resamples, at most `MAX_N_BOOT` (the metrics draw them in bounded blocks).
- `--workers`: verifier processes, at most `MAX_WORKERS` (the pool also caps them per core).
- `--timeout`: seconds per verification, finite in (0, `MAX_TIMEOUT`].
- `--problem-budget`: seconds of verifier time per problem, finite in (0, `MAX_BUDGET`]; default
  `DEFAULT_PROBLEM_BUDGET`.
"""

from __future__ import annotations

import math
import numbers

from wiseft.errors import ConfigError, MetricError

MAX_N_BOOT = 100_000  # bootstrap resamples; 1,000 give intervals to about ±0.5 percentage point
MAX_WORKERS = 64  # hard limit on --workers
MAX_TIMEOUT = 3600.0  # seconds per call
MAX_BUDGET = 86400.0  # seconds of verifier time per problem
DEFAULT_PROBLEM_BUDGET = 120.0  # seconds of verifier time per problem and grading batch


def check_n_boot(n_boot, flag: str = "--n-boot") -> int:
    """`n_boot` as a number of bootstrap resamples in [1, MAX_N_BOOT]; MetricError naming `flag` else.
    numpy's integers count as whole numbers (`numbers.Integral`); bools do not."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral):
        raise MetricError(f"{flag} must be a whole number of resamples, got {n_boot!r}")
    if n_boot < 1:
        raise MetricError(f"n_boot must be at least 1, got {n_boot} ({flag})")
    if n_boot > MAX_N_BOOT:
        raise MetricError(f"{flag} is {n_boot}; the limit is {MAX_N_BOOT} bootstrap resamples")
    return int(n_boot)


def check_timeout(value, flag: str = "--timeout") -> float:
    """`value` as seconds per verification: a finite number in (0, MAX_TIMEOUT], else ConfigError."""
    return _seconds(value, flag, MAX_TIMEOUT, "per verification")


def check_budget(value, flag: str = "--problem-budget") -> float:
    """`value` as seconds of verifier time per problem: finite, in (0, MAX_BUDGET], else ConfigError."""
    return _seconds(value, flag, MAX_BUDGET, "of verifier time per problem")


def _seconds(value, flag: str, limit: float, what: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number of seconds {what}, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{flag} must be positive seconds {what} (finite, > 0), got {value!r}")
    if seconds > limit:
        raise ConfigError(f"{flag} is {seconds:g} s; the limit is {limit:g} s {what}")
    return seconds


def check_workers(value, flag: str = "--workers") -> int | None:
    """`value` as a number of verifier processes (None: automatic): an integer in [1, MAX_WORKERS]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be a whole number of processes, got {value!r}")
    if value < 1:
        raise ConfigError(f"{flag} must be at least 1, got {value}")
    if value > MAX_WORKERS:
        raise ConfigError(f"{flag} is {value}; the limit is {MAX_WORKERS} verifier processes")
    return value
