"""Plain exact numbers compared without the verifier: integers, decimals, ``a/b`` and ``\\frac{a}{b}`` as
fractions (this agrees with Math-Verify's verdict and costs microseconds), and integers by their canonical
spelling, so that integers of any length compare exactly without conversion."""

from __future__ import annotations

import re
from fractions import Fraction

MAX_DIGITS = 4000  # plain numbers longer than this are not converted (Python's limit is 4300 digits)
_INT = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d*)\.(\d+)")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH = re.compile(r"([+-]?\d+)/(\d+)")


def exact_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_short) for a plain exact number, else None. Long decimals are left to the verifier,
    whose numeric comparison rounds; so are numbers of more than MAX_DIGITS characters (Python refuses to
    convert them, and no answer needs them)."""
    if len(s) > MAX_DIGITS:
        return None
    if _INT.fullmatch(s):
        return Fraction(int(s)), len(s) <= 15
    m = _DECIMAL.fullmatch(s)
    if m:
        return Fraction(s), len(m.group(2)) < 6
    m = _FRAC.fullmatch(s) or _SLASH.fullmatch(s)
    if m:
        *sign, num, den = m.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return (-value if sign and sign[0] == "-" else value), True
    return None


def int_value(s: str) -> str | None:
    """The canonical spelling (sign and digits, no leading zeros) of an integer answer, else None.
    Compared as strings, so that integers of any length compare exactly without conversion."""
    s = s.replace(",", "").replace("\\$", "").replace("$", "").strip()
    m = _DECIMAL.fullmatch(s)
    if m and set(m.group(2)) == {"0"}:  # "18.00"
        s = s[: s.index(".")].rstrip("+-") and s[: s.index(".")] or "0"
    if not _INT.fullmatch(s):
        return None
    negative, digits = s.startswith("-"), s.lstrip("+-").lstrip("0")
    return ("-" if negative and digits else "") + (digits or "0")
