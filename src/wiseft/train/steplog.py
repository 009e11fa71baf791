"""A training run's per-step log: one JSON object per line in RUN/NAME.jsonl, beside the checkpoints.

Each step's line is appended and fsynced as soon as the step ends, so a report can follow a live run.
A kill can leave at most one torn last line, which `read_log` skips. On resume the log is rewritten
(atomically) from the history stored in the checkpoint it resumes from, so steps redone after the
checkpoint never appear twice and the log always agrees with the weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from wiseft.atomic import atomic_write_text
from wiseft.errors import TrainError

MAX_LINE_CHARS = 1 << 20


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a line and flush it to disk."""
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def rewrite_log(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Replace the log with `records` (atomically)."""
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a log; a torn last line (a kill mid-write) is skipped, any other bad line is an error."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"step log {path} does not exist; is this a GRPO run directory?")
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: the write was cut short
        if len(line) > MAX_LINE_CHARS and not last:
            raise TrainError(f"{path}:{i + 1}: line longer than {MAX_LINE_CHARS} characters")
        try:
            record = json.loads(line)
        except ValueError:
            if last:
                break
            raise TrainError(f"{path}:{i + 1}: not valid JSON; the log is damaged") from None
        if not isinstance(record, dict):
            raise TrainError(f"{path}:{i + 1}: expected a JSON object")
        records.append(record)
    return records
