"""Grids and k lists as users write them: `0:1:0.125` (start:stop:step, both ends included), `0,0.5,1`,
a number, or a YAML list. The one parser of `--delta`, `--temperature`, `--k` (and any other grid flag),
and of the ablation flags `--layers`/`--modules` that expand a sweep into one variant per choice.

Every grid is bounded before it is built (`MAX_GRID` values; non-finite bounds refused), so a typo such
as `--delta 0:1:1e-9` is a one-line error, not a billion-element list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from wiseft.errors import ConfigError

MAX_GRID = 1000  # values in one grid (δ, temperatures, k, ...)


def parse_grid(spec: Any, flag: str = "--delta") -> tuple[float, ...]:
    """`"0:1:0.125"`, `"0,0.5,1"`, a number or a list → a tuple of finite floats (at most MAX_GRID)."""
    if isinstance(spec, bool):
        raise ConfigError(f"{flag}: expected numbers, got {spec!r}")
    if isinstance(spec, (int, float)):
        return _checked((float(spec),), flag)
    if isinstance(spec, (list, tuple)):
        try:
            return _checked(tuple(float(x) for x in spec if not isinstance(x, bool)), flag, len(spec))
        except (TypeError, ValueError):
            raise ConfigError(f"{flag}: every value must be a number, got {list(spec)!r}") from None
    text = str(spec).strip()
    try:
        if ":" in text:
            return _range(text, flag)
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: give start:stop:step (e.g. 0:1:0.125) or comma-separated numbers"
        ) from None
    if not values:
        raise ConfigError(f"{flag} is empty; give start:stop:step or comma-separated numbers")
    return _checked(values, flag)


def _range(text: str, flag: str) -> tuple[float, ...]:
    parts = [float(x) for x in text.split(":")]
    if len(parts) != 3:
        raise ValueError(text)
    start, stop, step = parts
    if not all(math.isfinite(x) for x in parts):
        raise ConfigError(f"{flag} {text!r}: start, stop and step must be finite numbers")
    if step <= 0 or stop < start:
        raise ConfigError(f"{flag} {text!r}: need start <= stop and a positive step (e.g. 0:1:0.125)")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_GRID:
        raise ConfigError(
            f"{flag} {text!r} has {count:,} values; at most {MAX_GRID} are allowed, use a coarser step"
        )
    return tuple(round(start + i * step, 10) for i in range(count))


def _checked(values: tuple[float, ...], flag: str, given: int | None = None) -> tuple[float, ...]:
    if given is not None and given != len(values):
        raise ConfigError(f"{flag}: every value must be a number")
    if len(values) > MAX_GRID:
        raise ConfigError(f"{flag} has {len(values):,} values; at most {MAX_GRID} are allowed")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{flag}: values must be finite numbers, got {bad[0]!r}")
    return values


def parse_ks(spec: Any, flag: str = "--k") -> tuple[int, ...]:
    """Positive integers (as `parse_grid` reads them), sorted and without repeats: `1,4,16` or `1:8:1`."""
    try:
        values = parse_grid(spec, flag)
    except ConfigError as exc:
        if "at most" in str(exc) or "finite" in str(exc):
            raise
        raise ConfigError(f"{flag} must be positive integers such as 1,4,16, got {spec!r}") from None
    if any(v != int(v) or v < 1 for v in values):
        raise ConfigError(f"{flag} must be positive integers such as 1,4,16, got {spec!r}")
    return tuple(sorted({int(v) for v in values}))


def powers_of_two(n: int) -> tuple[int, ...]:
    """1, 2, 4, … up to n: the default k values of a run with n samples per problem."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return tuple(ks)


def check_ks_fit(ks: Sequence[int], n: int, flag: str = "--k") -> None:
    """Every k must be ≤ n (Pass@k needs k samples per problem)."""
    if ks and max(ks) > n:
        raise ConfigError(
            f"{flag} {max(ks)} is larger than --n {n}: Pass@k needs at least k samples per problem; "
            f"raise --n to {max(ks)} or drop k > {n}"
        )


# --- ablation flags (`wiseft sweep --layers/--modules`; the classification is in wiseft.merge.ablation) ---
MODULE_KINDS = ("attention", "mlp", "experts", "router", "shared_expert", "norm")
MODULE_ALIASES = {"attn": "attention", "ffn": "mlp", "shared_experts": "shared_expert"}


def parse_layers(value: Any) -> tuple[str, ...]:
    """`0:12,12:24` → ('0:12', '12:24'): the syntax is checked here, the depth against the model later."""
    items = _items(value, "--layers")
    for item in items:
        if item != "all" and not re.fullmatch(r"\d{1,6}:\d{1,6}", item):
            raise ConfigError(
                f"--layers {item!r}: give half-open block ranges START:STOP such as 0:12 (or 'all')"
            )
        if item != "all":
            start, stop = map(int, item.split(":"))
            if start >= stop:
                raise ConfigError(f"--layers {item}: START must be below STOP (half-open, e.g. 0:12)")
    return items


def parse_modules(value: Any) -> tuple[str, ...]:
    """`attention,mlp,no-attention` → the canonical kind names (aliases resolved)."""
    out = []
    for item in _items(value, "--modules"):
        neg = item.startswith("no-")
        kind = MODULE_ALIASES.get(item.removeprefix("no-"), item.removeprefix("no-"))
        if kind != "all" and kind not in MODULE_KINDS or (neg and kind == "all"):
            known = ", ".join(list(MODULE_KINDS) + [f"no-{k}" for k in ("attention", "mlp")] + ["all"])
            raise ConfigError(f"--modules {item!r} is not a module kind; choose among {known}")
        out.append(("no-" if neg else "") + kind)
    return tuple(out)


def _items(value: Any, flag: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{flag} must be a comma-separated list, got {value!r}")
    items = tuple(str(v).strip() for v in value)
    if any(not v for v in items):
        raise ConfigError(f"{flag} has an empty entry: {value!r}")
    if len(items) > 1000:
        raise ConfigError(f"{flag} has {len(items)} entries; at most 1000")
    return items
