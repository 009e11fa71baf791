"""Reading JSON Lines files: one object per line, blank lines skipped, errors that name file and line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from wiseft.errors import WiseftError


def iter_objects(path: str | os.PathLike, error: type[WiseftError]) -> Iterator[tuple[str, dict]]:
    """Yield (`"PATH:LINE"`, object) for every non-blank line of `path`.

    A line that is not valid JSON or not a JSON object, or a file that cannot be read, raises `error`
    (the caller's typed error) with a message naming the file and line.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(f"{where}: not valid JSON ({exc.msg}); fix or remove that line") from exc
                if not isinstance(row, dict):
                    raise error(f"{where}: expected a JSON object per line, got {type(row).__name__}")
                yield where, row
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text ({exc.reason}); give a JSONL file") from exc
