"""Reading untrusted JSON: JSON Lines files and single documents, with errors that name file and line.

Every JSON text wiseft reads from a user goes through `loads`: a text that is not valid JSON, holds a
number Python cannot convert, repeats a key inside one object, or nests deeper than `MAX_DEPTH` levels
raises the caller's typed error in one line (never a RecursionError or a bare ValueError). JSONL lines
are read one at a time, each at most `MAX_LINE_BYTES` long, so a file without newlines cannot make the
reader hold gigabytes before it complains.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wiseft.errors import WiseftError

MAX_DEPTH = 64  # nesting levels of arrays/objects in one JSON value (records use three or four)
MAX_LINE_BYTES = 64 * 1024**2  # one JSONL line (a record with a long completion is well under 1 MiB)
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # the escape of a (possibly lone) UTF-16 surrogate


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `[]` and `{}` are 1), without recursion."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(
    text: str | bytes,
    where: str,
    error: type[WiseftError],
    max_depth: int = MAX_DEPTH,
    parse_int: Callable[[str], Any] | None = None,
) -> Any:
    """Parse one JSON text; any defect raises `error` with a one-line message that begins with `where`.

    Stricter than `json.loads` where it is lax: NaN/Infinity and lone UTF-16 surrogates (which JSON does
    not allow, and which cannot be written back out as UTF-8) are refused, and so are repeated keys."""
    try:
        value = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_int=parse_int
        )
    except RecursionError:
        raise error(
            f"{where}: JSON nested deeper than {max_depth} levels; wiseft refuses such input"
        ) from None
    except _DuplicateKey as exc:
        raise error(f"{where}: key {exc.key[:80]!r} appears twice in one JSON object; keep one") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. an integer of more than 4300 digits
        raise error(f"{where}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    if depth(value) > max_depth:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels; wiseft refuses such input")
    if _SURROGATE.search(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        _check_surrogates(value, where, error)
    return value


def _check_surrogates(value: Any, where: str, error: type[WiseftError]) -> None:
    """Refuse strings holding a lone UTF-16 surrogate (written as an escape such as \\ud800)."""
    stack = [value]
    while stack:
        node = stack.pop()
        items = (
            [*node.keys(), *node.values()]
            if isinstance(node, dict)
            else node
            if isinstance(node, list)
            else [node]
        )
        for item in items:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise error(
                        f"{where}: a string holds a lone UTF-16 surrogate escape; fix the writer"
                    ) from None
            elif isinstance(item, (dict, list)):
                stack.append(item)


def iter_objects(path: str | os.PathLike, error: type[WiseftError]) -> Iterator[tuple[str, dict]]:
    """Yield (`"PATH:LINE"`, object) for every non-blank line of `path`.

    A line that is not valid UTF-8 JSON, not a JSON object, nested deeper than `MAX_DEPTH` or longer
    than `MAX_LINE_BYTES`, or a file that cannot be read, raises `error` (the caller's typed error) with a
    message naming the file and line.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            lineno = 0
            while True:
                raw = fh.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                lineno += 1
                where = f"{path}:{lineno}"
                if len(raw) > MAX_LINE_BYTES:
                    raise error(
                        f"{where}: line longer than {MAX_LINE_BYTES // 1024**2} MiB; wiseft reads at most "
                        "that much per record (is this a JSONL file?)"
                    )
                row = _parse_line(raw, where, error)
                if row is not None:
                    yield where, row
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse_line(raw: bytes, where: str, error: type[WiseftError]) -> dict | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text ({exc.reason}); give a UTF-8 JSONL file") from None
    if not line.strip():
        return None
    row = loads(line, where, error)
    if not isinstance(row, dict):
        raise error(f"{where}: expected a JSON object per line, got {type(row).__name__}")
    return row
