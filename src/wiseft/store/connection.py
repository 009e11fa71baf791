"""The store's connection: the writer's lock, the schema check and upgrade, transactions and their errors
(`StoreConnection`, the base of `SampleStore`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from wiseft import __version__
from wiseft.errors import StoreError
from wiseft.store.schema import SCHEMA, SCHEMA_VERSION, SCORE_TABLES


class StoreConnection:
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

    def __enter__(self) -> Self:
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
