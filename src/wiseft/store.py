"""The sample store: every sample and grade of a sweep, in one SQLite file, safe to kill at any moment.

Why SQLite: samples arrive in batches over minutes or hours, and a sweep must survive being killed. Each
batch is one transaction, so after a SIGKILL the store holds every batch committed before and nothing of
the one in flight; primary keys on (variant, problem, sample) make a duplicate impossible, and
`missing()` tells a restarted sweep exactly what is left. WAL mode lets readers (export, report) look
while a sweep writes.

Tables (schema version `SCHEMA_VERSION`, kept in `meta`):
- `runs`: one row per invocation (its resolved config, start and end time);
- `variants`: what was sampled — name, kind, recipe (JSON), temperature, seed, model fingerprints,
  sampling parameters, task. A variant is identified by `key`, a hash of everything that changes the
  samples, so a rerun with the same settings reuses its samples and a changed setting never does;
- `problems`: (task, problem id) → gold answer, prompt and `meta` (the task's other fields of the problem,
  JSON: MATH's subject and level, IFEval's instructions). `meta` came after schema version 1 was
  released: opening an older store for writing adds the column (older wiseft versions still read it),
  opening it read-only reads it without;
- `samples`: (variant, problem, sample_idx) → completion, n_tokens, finish_reason, score;
- `grades`: (variant, problem, sample_idx) → answer, extraction, verdict, correct, answer_class, grader;
- `verifiers`: one row per verifier that scored samples (`wiseft verify`): its 16-hex id, kind, vote
  transform and full identity (JSON: weights/config/tokenizer hashes, options, path);
- `scores`: (variant, problem, sample_idx, verifier) → score, and the run that wrote it. Several verifiers'
  scores live side by side; `samples.score` holds only scores of unknown origin (JSONL imported without a
  `verifier`). `verifiers` and `scores` came after schema version 1 too: a writer creates them in an older
  store, a reader of a store without them sees no verifier scores.

One writer at a time: opening for writing takes an exclusive `fcntl` lock on `PATH.lock` (released by
the OS when the process dies, so a killed sweep never leaves a stale lock); a second writer gets a
StoreError naming the store and the holder's PID. Opening with `writer=False` reads without the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiseft import __version__
from wiseft.atomic import atomic_write_text
from wiseft.errors import StoreError
from wiseft.records import (
    GRADE_FIELDS,
    PROBLEM_FIELDS,
    SAMPLE_FIELDS,
    ProblemSamples,
    read_records,
    to_problem_samples,
)

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


@dataclass(frozen=True)
class ProblemRow:
    """A row of `problems`: what the store knows of one problem of a task (None where unknown)."""

    problem_id: str
    gold: str | None
    prompt: str | None
    meta: dict | None


@dataclass(frozen=True)
class VariantRow:
    """A row of `variants`: what one set of samples was drawn from."""

    id: int
    key: str
    name: str
    kind: str
    task: str
    recipe: dict | None
    temperature: float | None
    seed: int | None
    step: int | None
    model_hashes: dict
    sampling: dict


@dataclass(frozen=True)
class VerifierRow:
    """A row of `verifiers`: a verifier that scored samples (kind and vote transform None when unknown,
    e.g. scores imported from JSONL that named only the verifier's id)."""

    id: str
    kind: str | None
    vote_transform: str | None
    identity: dict

    def describe(self) -> str:
        """The kind ("orm") and where the verifier was loaded from, as far as known."""
        parts = [self.kind or "unknown kind"]
        if self.identity.get("path"):
            parts.append(str(self.identity["path"]))
        elif self.identity.get("imported_from"):
            parts.append(f"imported from {self.identity['imported_from']}")
        return ", ".join(parts)


def variant_key(**fields: Any) -> str:
    """A stable hash of everything that determines a variant's samples."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SampleStore:
    """Open (creating when absent) the store at `path`. Use as a context manager, or call `close()`."""

    def __init__(self, path: str | os.PathLike, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self._lock_fd: int | None = None
        if not writer and not self.path.is_file():
            raise StoreError(f"sample store {self.path} does not exist")
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self.db.execute("PRAGMA foreign_keys = ON")
            if writer:
                self.db.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: a killed process loses nothing committed (only power loss could).
                self.db.execute("PRAGMA synchronous = NORMAL")
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self._refused()
            raise StoreError(
                f"sample store {self.path} is not a readable SQLite database ({exc}); "
                "point --store at a wiseft store or a new path"
            ) from exc
        except BaseException:
            self._refused()
            raise

    # ---- lifecycle ---------------------------------------------------------------------------------

    @staticmethod
    def check_free(path: str | os.PathLike) -> None:
        """Fail now (before a model is loaded) when another process writes the store at `path`; creates
        nothing. The writer's own lock is taken when the store is opened."""
        lock_path = Path(path).with_name(Path(path).name + ".lock")
        if not lock_path.is_file():
            return
        fd = os.open(lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StoreError(
                f"sample store {path} is in use by another wiseft process (pid {holder}); wait for it to "
                "finish or use another --store"
            ) from None
        finally:
            os.close(fd)

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._created_lock = None if lock_path.exists() else lock_path
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            self._created_lock = None
            raise StoreError(
                f"sample store {self.path} is in use by another wiseft process (pid {holder}); wait for it "
                "to finish or use another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _refused(self) -> None:
        """Close after a refused open, removing the lock file this open created (nothing is left beside
        a store we would not use)."""
        self.close()
        created = getattr(self, "_created_lock", None)
        if created is not None:
            created.unlink(missing_ok=True)

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_schema(self) -> None:
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            written_by = self.db.execute("SELECT value FROM meta WHERE key='wiseft_version'").fetchone()
            version = int(row[0]) if row else None
            if version != SCHEMA_VERSION:
                by = f" by wiseft {written_by[0]}" if written_by else ""
                raise StoreError(
                    f"sample store {self.path} has schema version {version}{by}; this wiseft "
                    f"({__version__}) reads version {SCHEMA_VERSION}. Use a new --store path, or the "
                    "wiseft version that wrote it"
                )
            self._upgrade()
            return
        tables = self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        if tables:
            raise StoreError(
                f"{self.path} is an SQLite database but not a wiseft sample store (tables: "
                f"{', '.join(t[0] for t in tables[:5])}); use another --store path"
            )
        if not self.writer:
            raise StoreError(f"sample store {self.path} is empty")
        with self.transaction():
            for statement in SCHEMA.split(";"):  # not executescript: it would commit mid-transaction
                if statement.strip():
                    self.db.execute(statement)
            self.db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("wiseft_version", __version__)],
            )
        self._problem_meta = self._thinking = self._scores = True

    def _upgrade(self) -> None:
        """Additions to schema version 1 that older versions ignore: `problems.meta`, the thinking columns
        of `samples` and the `verifiers`/`scores` tables. A writer adds them; a reader of a store that lacks
        them reads without."""
        problems = {row[1] for row in self.db.execute("PRAGMA table_info(problems)")}
        samples = {row[1] for row in self.db.execute("PRAGMA table_info(samples)")}
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self._problem_meta = "meta" in problems
        self._thinking = {"think_closed", "thinking_tokens"} <= samples
        self._scores = {"verifiers", "scores"} <= tables
        if self.writer and not (self._problem_meta and self._thinking and self._scores):
            with self.transaction() as db:
                if not self._problem_meta:
                    db.execute("ALTER TABLE problems ADD COLUMN meta TEXT")
                for column in {"think_closed", "thinking_tokens"} - samples:
                    db.execute(f"ALTER TABLE samples ADD COLUMN {column} INTEGER")
                for statement in SCORE_TABLES.split(";"):
                    if statement.strip():
                        db.execute(statement)
            self._problem_meta = self._thinking = self._scores = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything in the block is committed together, or nothing is.

        A full disk (SQLITE_FULL, or ENOSPC from the OS) rolls the block back and raises StoreError;
        every earlier transaction is already safe on disk."""
        if not self.writer:
            raise StoreError(f"sample store {self.path} was opened read-only")
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._error(exc, "start a transaction") from exc
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            if isinstance(exc, (sqlite3.OperationalError, OSError)):
                raise self._error(exc, "commit") from exc
            raise

    def _error(self, exc: BaseException, what: str) -> StoreError:
        text = str(exc)
        if "full" in text.lower() or getattr(exc, "errno", None) == 28:
            return StoreError(
                f"sample store {self.path}: disk full during {what}; the batch in flight was not written, "
                "everything committed before is safe. Free space and run again to resume"
            )
        if "locked" in text.lower():
            return StoreError(f"sample store {self.path} is locked by another process ({text})")
        return StoreError(f"sample store {self.path}: cannot {what}: {text}")

    # ---- runs, variants, problems ------------------------------------------------------------------

    def begin_run(self, command: str, config: dict) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs(command, config, wiseft_version, started) VALUES (?, ?, ?, ?)",
                (command, json.dumps(config, default=str), __version__, time.time()),
            )
            return int(cur.lastrowid)

    def end_run(self, run_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    def variant(
        self,
        name: str,
        kind: str,
        task: str,
        model_hashes: dict,
        sampling: dict,
        recipe: dict | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        step: int | None = None,
        run_id: int | None = None,
    ) -> VariantRow:
        """The variant with these settings, created when the store has none yet."""
        key = variant_key(
            kind=kind, task=task, models=model_hashes, sampling=sampling, recipe=recipe,
            temperature=temperature, seed=seed,
        )  # fmt: skip
        found = self._variant_row("key", key)
        if found is not None:
            return found
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO variants(key, run_id, name, kind, task, recipe, temperature, seed, step, "
                "model_hashes, sampling) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key, run_id, name, kind, task, json.dumps(recipe) if recipe is not None else None,
                    temperature, seed, step, json.dumps(model_hashes), json.dumps(sampling),
                ),
            )  # fmt: skip
        return self._variant_row("key", key)  # type: ignore[return-value]

    def variants(self) -> list[VariantRow]:
        rows = self.db.execute("SELECT id FROM variants ORDER BY id").fetchall()
        return [self._variant_row("id", r[0]) for r in rows]  # type: ignore[misc]

    def latest_run(self) -> dict | None:
        """The newest run: its command, resolved config (a dict) and the wiseft version that ran it."""
        row = self.db.execute(
            "SELECT command, config, wiseft_version FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        try:
            config = json.loads(row[1])
        except (TypeError, ValueError):
            config = {}
        return {
            "command": row[0],
            "config": config if isinstance(config, dict) else {},
            "wiseft_version": row[2],
        }

    def graders(self) -> list[str]:
        """The graders (name==version) whose verdicts the store holds."""
        rows = self.db.execute("SELECT DISTINCT grader FROM grades ORDER BY grader")
        return [r[0] for r in rows if r[0]]

    def summary(self) -> list[dict]:
        """One row per variant: its settings and how many problems, samples, grades and correct grades."""
        counts = {
            row[0]: row[1:]
            for row in self.db.execute(
                "SELECT s.variant_id, COUNT(DISTINCT s.problem_id), COUNT(*), COUNT(g.verdict), "
                "COALESCE(SUM(g.correct), 0) FROM samples s LEFT JOIN grades g ON g.variant_id=s.variant_id "
                "AND g.problem_id=s.problem_id AND g.sample_idx=s.sample_idx GROUP BY s.variant_id"
            )
        }
        rows = []
        for v in self.variants():
            problems, samples, graded, correct = counts.get(v.id, (0, 0, 0, 0))
            rows.append({"id": v.id, "name": v.name, "kind": v.kind, "task": v.task, "temperature": v.temperature,
                         "step": v.step, "problems": problems, "samples": samples, "graded": graded,
                         "correct": correct})  # fmt: skip
        return rows

    def find_variant(self, name: str) -> VariantRow:
        rows = self.db.execute("SELECT id FROM variants WHERE name=? ORDER BY id", (name,)).fetchall()
        if not rows:
            names = [v.name for v in self.variants()]
            raise StoreError(
                f"sample store {self.path} has no variant {name!r}; it has: {', '.join(names[:10]) or 'none'}"
            )
        return self._variant_row("id", rows[-1][0])  # type: ignore[return-value]

    def _variant_row(self, column: str, value: Any) -> VariantRow | None:
        row = self.db.execute(
            "SELECT id, key, name, kind, task, recipe, temperature, seed, step, model_hashes, sampling "
            f"FROM variants WHERE {column}=?",
            (value,),
        ).fetchone()
        if row is None:
            return None
        return VariantRow(
            id=row[0], key=row[1], name=row[2], kind=row[3], task=row[4],
            recipe=json.loads(row[5]) if row[5] else None, temperature=row[6], seed=row[7], step=row[8],
            model_hashes=json.loads(row[9]), sampling=json.loads(row[10]),
        )  # fmt: skip

    def add_problems(self, task: str, problems: Iterable[tuple]) -> None:
        """Record (problem_id, gold, prompt) or (problem_id, gold, prompt, meta) of `task`. A value already
        stored is kept; only a value the store does not know yet (NULL) is filled in."""
        rows = []
        for row in problems:
            pid, gold, prompt, *rest = row
            meta = rest[0] if rest else None
            if meta is not None and not isinstance(meta, dict):
                raise StoreError(
                    f"problem {pid!r} of task {task}: meta must be a dict, got {type(meta).__name__}"
                )
            rows.append((task, pid, gold, prompt, json.dumps(meta, ensure_ascii=False) if meta else None))
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO problems(task, problem_id, gold, prompt, meta) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(task, problem_id) DO UPDATE SET gold=COALESCE(problems.gold, excluded.gold), "
                "prompt=COALESCE(problems.prompt, excluded.prompt), meta=COALESCE(problems.meta, excluded.meta)",
                rows,
            )

    def problems(self, task: str) -> list[ProblemRow]:
        """The recorded problems of `task`, in the order they were first recorded (the task's order)."""
        meta = "meta" if self._problem_meta else "NULL"
        rows = self.db.execute(
            f"SELECT problem_id, gold, prompt, {meta} FROM problems WHERE task=? ORDER BY rowid", (task,)
        ).fetchall()
        return [ProblemRow(r[0], r[1], r[2], self._meta(r[3], task, r[0])) for r in rows]

    def _meta(self, text: str | None, task: str, pid: str) -> dict | None:
        if text is None:
            return None
        try:
            meta = json.loads(text)
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise StoreError(
                f"sample store {self.path}: the meta of problem {pid!r} of task {task} is not a JSON object; "
                "the store is damaged, export what you can with --variant or start a new store"
            )
        return meta

    # ---- samples -----------------------------------------------------------------------------------

    def add_samples(self, variant: VariantRow | int, records: Sequence[dict]) -> int:
        """Commit sample records (`problem_id`, `sample_idx`, `completion`, `n_tokens`, `finish_reason`,
        optional `score`) as one transaction; samples already stored are left as they are. Returns how
        many were new."""
        vid = _vid(variant)
        rows = [(vid, *(r.get(f) for f in SAMPLE_FIELDS), *_thinking_columns(r)) for r in records]
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO samples(variant_id, problem_id, sample_idx, completion, n_tokens, "
                "finish_reason, score, think_closed, thinking_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def sample_counts(self, variant: VariantRow | int, n: int) -> dict[str, int]:
        """problem_id → how many of the samples 0..n-1 are stored."""
        rows = self.db.execute(
            "SELECT problem_id, COUNT(*) FROM samples WHERE variant_id=? AND sample_idx<? GROUP BY problem_id",
            (_vid(variant), n),
        ).fetchall()
        return dict(rows)

    def missing(self, variant: VariantRow | int, problem_ids: Sequence[str], n: int) -> list[str]:
        """The problems (in the given order) that lack any of the samples 0..n-1."""
        counts = self.sample_counts(variant, n)
        return [pid for pid in problem_ids if counts.get(pid, 0) < n]

    def records(
        self, variant: VariantRow | int, problem_ids: Sequence[str] | None = None, n: int | None = None,
        graded: bool = False, with_problem: bool = False, verifier: str | None = None,
    ) -> list[dict]:  # fmt: skip
        """Sample records (the JSONL schema) of a variant, ordered by problem then sample index; with
        `graded`, only graded samples, with their grade fields; with `with_problem`, each record also has
        its problem's `prompt`, `gold` and `meta` where the store knows them (the variant's task).

        `score` is the sample's score of unknown origin (`samples.score`) by default; with `verifier` (an
        id), that verifier's score instead, with `verifier` and `vote_transform` beside it (samples it has
        not scored carry no score)."""
        v = self._variant_row("id", _vid(variant))
        if v is None:
            raise StoreError(f"sample store {self.path} has no variant with id {_vid(variant)}")
        scorer = self.verifier(verifier) if verifier is not None else None
        if verifier is not None and scorer is None:
            raise StoreError(f"sample store {self.path} holds no scores of verifier {verifier!r}")
        sql, args = self._records_sql(v, graded, with_problem, verifier)
        if n is not None:
            sql += " AND s.sample_idx<?"
            args.append(n)
        if problem_ids is not None and len(problem_ids) <= 900:  # else filtered below (SQL variable limit)
            sql += f" AND s.problem_id IN ({','.join('?' * len(problem_ids))})"
            args.extend(problem_ids)
        rows = self.db.execute(sql + " ORDER BY s.problem_id, s.sample_idx", args).fetchall()
        wanted = None if problem_ids is None else {pid: i for i, pid in enumerate(problem_ids)}
        out = [
            self._record(row, v, with_problem, scorer) for row in rows if wanted is None or row[0] in wanted
        ]
        if wanted is not None:
            out.sort(key=lambda r: (wanted[r["problem_id"]], r["sample_idx"]))
        return out

    def _records_sql(
        self, v: VariantRow, graded: bool, with_problem: bool, verifier: str | None
    ) -> tuple[str, list]:
        """The query of `records` up to its WHERE clause on the variant, and its arguments."""
        join = "JOIN" if graded else "LEFT JOIN"
        problem, args = "", [v.id]
        thinking = "s.think_closed, s.thinking_tokens" if self._thinking else "NULL, NULL"
        if with_problem:  # the problem's columns come last, 16th to 18th
            meta = "p.meta" if self._problem_meta else "NULL"
            problem = f", p.prompt, p.gold, {meta}"
            join = f"LEFT JOIN problems p ON p.task=? AND p.problem_id=s.problem_id {join}"
            args = [v.task, v.id]
        score = "s.score"
        if verifier is not None:
            score = "c.score"
            join = ("LEFT JOIN scores c ON c.variant_id=s.variant_id AND c.problem_id=s.problem_id AND "
                    f"c.sample_idx=s.sample_idx AND c.verifier_id=? {join}")  # fmt: skip
            args.insert(0, verifier)
        sql = (
            f"SELECT s.problem_id, s.sample_idx, s.completion, s.n_tokens, s.finish_reason, {score}, "
            f"g.answer, g.extraction, g.verdict, g.correct, g.answer_class, g.grader, g.reason, {thinking}{problem} "
            f"FROM samples s {join} grades g ON g.variant_id=s.variant_id AND g.problem_id=s.problem_id "
            "AND g.sample_idx=s.sample_idx WHERE s.variant_id=?"
        )
        return sql, args

    def _record(self, row: tuple, v: VariantRow, with_problem: bool, scorer: VerifierRow | None) -> dict:
        rec = {"problem_id": row[0], "sample_idx": row[1], "completion": row[2], "n_tokens": row[3],
               "finish_reason": row[4], "variant": v.name}  # fmt: skip
        if row[5] is not None:
            rec["score"] = row[5]
            if scorer is not None:
                rec["verifier"] = scorer.id
                if scorer.vote_transform is not None:
                    rec["vote_transform"] = scorer.vote_transform
        if row[8] is not None:
            rec.update(zip(GRADE_FIELDS, (row[6], row[7], row[8], bool(row[9]), row[10], row[11], row[12]),
                           strict=True))  # fmt: skip
        if row[13] is not None:
            rec["think_closed"], rec["thinking_tokens"] = bool(row[13]), row[14]
        if with_problem:
            meta = self._meta(row[17], v.task, row[0])
            known = zip(PROBLEM_FIELDS, (row[15], row[16], meta), strict=True)
            rec.update((name, value) for name, value in known if value is not None)
        return rec

    # ---- grades ------------------------------------------------------------------------------------

    def ungraded_problems(
        self, variant: VariantRow | int, problem_ids: Sequence[str], n: int, grader: str
    ) -> list[str]:
        """Problems whose samples 0..n-1 are not all graded by `grader` (answer classes are per problem,
        so a problem is graded whole)."""
        rows = self.db.execute(
            "SELECT problem_id, COUNT(*) FROM grades WHERE variant_id=? AND sample_idx<? AND grader=? "
            "GROUP BY problem_id",
            (_vid(variant), n, grader),
        ).fetchall()
        counts = dict(rows)
        return [pid for pid in problem_ids if counts.get(pid, 0) < n]

    def add_grades(self, variant: VariantRow | int, graded: Sequence[dict]) -> None:
        """Store grade fields of graded records, replacing older grades of the same samples."""
        vid = _vid(variant)
        rows = [
            (vid, r["problem_id"], r["sample_idx"], r.get("answer"), r.get("extraction"), r["verdict"],
             int(bool(r["correct"])), int(r["answer_class"]), r.get("grader") or "", r.get("reason"))
            for r in graded
        ]  # fmt: skip
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO grades(variant_id, problem_id, sample_idx, answer, extraction, "
                "verdict, correct, answer_class, grader, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def problem_samples(
        self, variant: VariantRow | int, problem_ids: Sequence[str] | None = None, n: int | None = None,
        verifier: str | None = None,
    ) -> list[ProblemSamples]:  # fmt: skip
        """One `ProblemSamples` per problem (in `problem_ids` order, else by id), from samples 0..n-1 and
        their grades. Every such sample must be graded. Scores: those of `verifier` (an id) when named,
        else `samples.score` (scores of unknown origin; none unless imported)."""
        recs = self.records(variant, problem_ids, n, verifier=verifier)
        for r in recs:
            if "verdict" not in r:
                raise StoreError(
                    f"sample store {self.path}: sample {r['sample_idx']} of problem {r['problem_id']!r} "
                    f"(variant {r['variant']!r}) is not graded yet; grade before scoring"
                )
        if problem_ids is not None:
            present = {r["problem_id"] for r in recs}
            absent = [pid for pid in problem_ids if pid not in present]
            if absent:
                raise StoreError(
                    f"sample store {self.path}: no samples for problem(s) {', '.join(absent[:5])}; "
                    "sample them first"
                )
        return to_problem_samples(recs, f"sample store {self.path}") if recs else []

    # ---- verifier scores ---------------------------------------------------------------------------

    def add_verifier(self, identity: dict) -> str:
        """Record a verifier (its identity: `id`, `kind`, `vote_transform`, ...) unless its id is known
        already; returns the id."""
        vid = identity.get("id")
        if not isinstance(vid, str) or not vid:
            raise StoreError(
                f"sample store {self.path}: a verifier's identity needs a string id, got {vid!r}"
            )
        row = (vid, identity.get("kind"), identity.get("vote_transform"),
               json.dumps(identity, sort_keys=True, default=str), time.time())  # fmt: skip
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO verifiers(id, kind, vote_transform, identity, added) VALUES (?, ?, ?, ?, ?)",
                row,
            )
        return vid

    def verifier(self, verifier_id: str) -> VerifierRow | None:
        if not self._scores:
            return None
        row = self.db.execute(
            "SELECT id, kind, vote_transform, identity FROM verifiers WHERE id=?", (verifier_id,)
        ).fetchone()
        return VerifierRow(row[0], row[1], row[2], _json_object(row[3])) if row else None

    def scored_by(self, variants: Sequence[VariantRow | int] | None = None) -> dict[str, int]:
        """Verifier id → samples it scored (of `variants`, default all), by id."""
        if not self._scores:
            return {}
        sql, args = "SELECT verifier_id, COUNT(*) FROM scores", []
        if variants is not None:
            ids = [_vid(v) for v in variants]
            sql += f" WHERE variant_id IN ({','.join('?' * len(ids))})"
            args = ids
        return dict(self.db.execute(sql + " GROUP BY verifier_id ORDER BY verifier_id", args).fetchall())

    def choose_verifier(
        self, variants: Sequence[VariantRow | int] | None = None, verifier: str | None = None
    ) -> VerifierRow | None:
        """The verifier whose scores Best@k and weighted maj@k read for `variants`: `verifier` when named
        (it must have scored some), else the only one that scored any, else None (no verifier scores).
        Scores of two verifiers are never mixed: with several and none named, a StoreError lists them."""
        counts = self.scored_by(variants)
        rows = [self.verifier(vid) for vid in counts]
        listed = ", ".join(f"{r.id} ({r.describe()})" for r in rows if r is not None) or "none"
        if verifier is not None:
            if verifier not in counts:
                raise StoreError(
                    f"sample store {self.path} holds no scores of verifier {verifier!r}; it holds scores of: "
                    f"{listed}"
                )
            return self.verifier(verifier)
        if len(counts) > 1:
            raise StoreError(
                f"sample store {self.path} holds scores of {len(counts)} verifiers: {listed}; scores of two "
                "verifiers are never mixed (one Best@k, one export): name one with --verifier ID"
            )
        return rows[0] if rows else None

    def score_counts(self, variant: VariantRow | int, verifier_id: str) -> tuple[int, int, float | None]:
        """(samples of the variant, how many of them the verifier scored, their mean score)."""
        total = self.db.execute(
            "SELECT COUNT(*) FROM samples WHERE variant_id=?", (_vid(variant),)
        ).fetchone()
        scored: tuple = (0, None)
        if self._scores:
            scored = self.db.execute(
                "SELECT COUNT(*), AVG(score) FROM scores WHERE variant_id=? AND verifier_id=?",
                (_vid(variant), verifier_id),
            ).fetchone()
        return int(total[0]), int(scored[0]), scored[1]

    def unscored(
        self, variant: VariantRow | int, verifier_id: str, limit: int, after: tuple[str, int] | None = None
    ) -> list[tuple[str, int, str]]:
        """Up to `limit` (problem_id, sample_idx, completion) of the variant's samples that the verifier
        has not scored, in (problem, sample) order, after the key `after` (the last key of the chunk
        before: each chunk is then one index range scan, not a scan from the start)."""
        sql = (
            "SELECT s.problem_id, s.sample_idx, s.completion FROM samples s WHERE s.variant_id=? AND NOT EXISTS "
            "(SELECT 1 FROM scores c WHERE c.variant_id=s.variant_id AND c.verifier_id=? AND "
            "c.problem_id=s.problem_id AND c.sample_idx=s.sample_idx)"
        )
        args: list = [_vid(variant), verifier_id]
        if after is not None:
            sql += " AND (s.problem_id, s.sample_idx) > (?, ?)"
            args += list(after)
        rows = self.db.execute(sql + " ORDER BY s.problem_id, s.sample_idx LIMIT ?", [*args, limit])
        return [(r[0], int(r[1]), r[2]) for r in rows]

    def add_scores(
        self, variant: VariantRow | int, verifier_id: str, scores: Sequence[tuple[str, int, float]],
        run_id: int | None = None,
    ) -> int:  # fmt: skip
        """Commit (problem_id, sample_idx, score) of one verifier as one transaction; scores already stored
        are kept. Returns how many were new. A score must be a finite number."""
        vid = _vid(variant)
        rows = []
        for pid, idx, score in scores:
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
                raise StoreError(
                    f"sample store {self.path}: score {score!r} of sample {idx} of problem {pid!r} is not a "
                    "finite number; nothing of this chunk was written"
                )
            rows.append((vid, pid, idx, verifier_id, float(score), run_id))
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO scores(variant_id, problem_id, sample_idx, verifier_id, score, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def discard_run(self, run_id: int, verifier_id: str | None = None) -> None:
        """Undo a run that failed: delete the scores it wrote, the verifier if no scores of it are left, and
        the run's own row (one transaction)."""
        with self.transaction() as db:
            if self._scores:
                db.execute("DELETE FROM scores WHERE run_id=?", (run_id,))
                if verifier_id is not None:
                    db.execute(
                        "DELETE FROM verifiers WHERE id=? AND NOT EXISTS (SELECT 1 FROM scores WHERE "
                        "verifier_id=?)",
                        (verifier_id, verifier_id),
                    )
            db.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # ---- JSONL export / import ---------------------------------------------------------------------

    def export_jsonl(
        self, path: str | os.PathLike, variants: Sequence[VariantRow | int] | None = None,
        verifier: str | None = None,
    ) -> int:  # fmt: skip
        """Write the sample records (with grades where present, and their problem's prompt, gold and meta
        where known) of `variants` (default all) as JSONL, atomically. Returns the number of records.

        Scores: those of `verifier`, else of the only verifier that scored any of these samples (each
        record then carries `score`, `verifier` and `vote_transform`), else `samples.score`; scores of
        several verifiers and none named is a StoreError listing them (`choose_verifier`)."""
        chosen = list(variants) if variants is not None else self.variants()
        scorer = self.choose_verifier(chosen, verifier)
        vid = scorer.id if scorer is not None else None
        lines = [
            json.dumps(r, ensure_ascii=False)
            for v in chosen
            for r in self.records(v, with_problem=True, verifier=vid)
        ]
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        return len(lines)

    def import_jsonl(self, path: str | os.PathLike, task: str, default_variant: str = "imported") -> dict:
        """Read a JSONL file of sample records into the store (`import_records`)."""
        return self.import_records(read_records(path), path, task, default_variant)

    def import_records(
        self, records: Sequence[dict], path: str | os.PathLike, task: str, default_variant: str = "imported"
    ) -> dict:
        """Add checked sample records (graded or not), read from `path`, to variants named by their `variant`
        field (else `default_variant`), kind "imported"; records' `prompt`, `gold` and `meta` go to the
        problems of `task` (values already stored are kept). Returns {variant name: records added}."""
        problems = problem_fields(records, str(path))
        verifiers = imported_verifiers(records, str(path))
        by_name: dict[str, list[dict]] = {}
        for r in records:
            by_name.setdefault(r.get("variant") or default_variant, []).append(r)
        if problems:
            self.add_problems(task, problems)
        for vid, transform in verifiers.items():
            self.add_verifier({"id": vid, "kind": None, "vote_transform": transform,
                               "imported_from": str(Path(path).resolve())})  # fmt: skip
        added = {}
        for name, recs in by_name.items():
            v = self.variant(name, "imported", task, {"source": str(Path(path).resolve())}, {"name": name})
            scored = [r for r in recs if r.get("verifier") is not None and r.get("score") is not None]
            added[name] = self.add_samples(v, [_without_verifier_score(r) for r in recs])
            for vid in dict.fromkeys(r["verifier"] for r in scored):
                self.add_scores(v, vid, [(r["problem_id"], r["sample_idx"], r["score"]) for r in scored
                                         if r["verifier"] == vid])  # fmt: skip
            graded = [r for r in recs if "verdict" in r and "correct" in r and "answer_class" in r]
            if graded:
                self.add_grades(v, graded)
        return added


def problem_fields(records: Sequence[dict], where: str) -> list[tuple]:
    """(problem_id, gold, prompt, meta) of each problem whose records carry any of them: the first value
    seen of each field. Two different golds for one problem are an error (a prompt may differ between
    variants; the store keeps the first)."""
    found: dict[str, list] = {}
    for r in records:
        if not any(r.get(f) is not None for f in PROBLEM_FIELDS):
            continue
        row = found.setdefault(r["problem_id"], [r["problem_id"], None, None, None])
        gold = r.get("gold")
        if gold is not None and row[1] is not None and gold != row[1]:
            raise StoreError(
                f"{where}: problem {r['problem_id']!r} has two gold answers ({row[1]!r} and {gold!r}); "
                "fix the file so that each problem has one"
            )
        for i, name in ((1, "gold"), (2, "prompt"), (3, "meta")):
            if row[i] is None:
                row[i] = r.get(name)
    return [tuple(row) for row in found.values()]


def imported_verifiers(records: Sequence[dict], where: str) -> dict[str, str | None]:
    """Verifier id → vote transform of the scored records that name their verifier; one transform per id."""
    found: dict[str, str | None] = {}
    for r in records:
        vid = r.get("verifier")
        if vid is None or r.get("score") is None:
            continue
        transform = r.get("vote_transform")
        if vid in found and transform != found[vid]:
            raise StoreError(
                f"{where}: verifier {vid!r} has two vote transforms ({found[vid]!r} and {transform!r}); "
                "fix the file so that each verifier has one"
            )
        found[vid] = transform
    return found


def _without_verifier_score(record: dict) -> dict:
    """The record as `samples` stores it: a score that names its verifier goes to `scores` instead."""
    if record.get("verifier") is None:
        return record
    return {k: v for k, v in record.items() if k not in ("score", "verifier", "vote_transform")}


def _thinking_columns(record: dict) -> tuple[int | None, int | None]:
    closed = record.get("think_closed")
    return (None if closed is None else int(bool(closed))), record.get("thinking_tokens")


def _vid(variant: VariantRow | int) -> int:
    return variant.id if isinstance(variant, VariantRow) else int(variant)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {}
