"""The store's SQLite schema: the tables of schema version `SCHEMA_VERSION` and the score tables added to it
later (`SampleStore._upgrade` creates them in an older store)."""

from __future__ import annotations

import os

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"


def is_store(path: str | os.PathLike) -> bool:
    """True when `path` is an SQLite file (a sample store, or something `SampleStore` will name as not one)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        return False


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    config TEXT NOT NULL,
    wiseft_version TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS variants (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    run_id INTEGER REFERENCES runs(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    recipe TEXT,
    temperature REAL,
    seed INTEGER,
    step INTEGER,
    model_hashes TEXT NOT NULL,
    sampling TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS problems (
    task TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    gold TEXT,
    prompt TEXT,
    meta TEXT,
    PRIMARY KEY (task, problem_id)
);
CREATE TABLE IF NOT EXISTS samples (
    variant_id INTEGER NOT NULL REFERENCES variants(id),
    problem_id TEXT NOT NULL,
    sample_idx INTEGER NOT NULL CHECK (sample_idx >= 0),
    completion TEXT NOT NULL,
    n_tokens INTEGER,
    finish_reason TEXT CHECK (finish_reason IN ('stop', 'length')),
    score REAL,
    think_closed INTEGER,
    thinking_tokens INTEGER,
    PRIMARY KEY (variant_id, problem_id, sample_idx)
);
CREATE TABLE IF NOT EXISTS grades (
    variant_id INTEGER NOT NULL,
    problem_id TEXT NOT NULL,
    sample_idx INTEGER NOT NULL,
    answer TEXT,
    extraction TEXT,
    verdict TEXT NOT NULL,
    correct INTEGER NOT NULL,
    answer_class INTEGER NOT NULL,
    grader TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (variant_id, problem_id, sample_idx),
    FOREIGN KEY (variant_id, problem_id, sample_idx) REFERENCES samples(variant_id, problem_id, sample_idx)
);
"""
# Added to schema version 1 later (`SampleStore._upgrade`): the scores of `wiseft verify`.
SCORE_TABLES = """
CREATE TABLE IF NOT EXISTS verifiers (
    id TEXT PRIMARY KEY,
    kind TEXT,
    vote_transform TEXT,
    identity TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    variant_id INTEGER NOT NULL,
    problem_id TEXT NOT NULL,
    sample_idx INTEGER NOT NULL,
    verifier_id TEXT NOT NULL REFERENCES verifiers(id),
    score REAL NOT NULL,
    run_id INTEGER,
    PRIMARY KEY (variant_id, verifier_id, problem_id, sample_idx),
    FOREIGN KEY (variant_id, problem_id, sample_idx) REFERENCES samples(variant_id, problem_id, sample_idx)
);
"""
SCHEMA += SCORE_TABLES
