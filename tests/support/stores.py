"""Reading a sample store from a test while another process may be writing it (the kill-and-resume tests)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sample_count(db_path: Path) -> int:
    """Samples committed so far (0 while the file is missing or locked)."""
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def sample_rows(db_path: Path) -> list[tuple]:
    """(variant name, problem id, sample index, completion) of every sample, in a fixed order."""
    db = sqlite3.connect(db_path)
    try:
        return db.execute(
            "SELECT v.name, s.problem_id, s.sample_idx, s.completion FROM samples s JOIN variants v "
            "ON v.id = s.variant_id ORDER BY v.name, s.problem_id, s.sample_idx"
        ).fetchall()
    finally:
        db.close()
