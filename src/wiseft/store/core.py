"""`SampleStore`: the lifecycle (lock, schema check and upgrade, transactions), runs, variants, problems,
samples and grades; verifier scores and JSONL transfer are its parts in `scores.py` and `transfer.py`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from wiseft import __version__
from wiseft.errors import StoreError
from wiseft.records import (
    GRADE_FIELDS,
    PROBLEM_FIELDS,
    SAMPLE_COLUMNS,
    SAMPLE_FIELDS,
    ProblemSamples,
    columns_to_problem_samples,
)
from wiseft.store.connection import StoreConnection
from wiseft.store.rows import ProblemRow, VariantRow, VerifierRow, variant_id, variant_key
from wiseft.store.scores import VerifierScores
from wiseft.store.transfer import JsonlTransfer


class SampleStore(StoreConnection, VerifierScores, JsonlTransfer):
    """Open (creating when absent) the store at `path`. Use as a context manager, or call `close()`."""

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
        vid = variant_id(variant)
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
            (variant_id(variant), n),
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
        v, scorer = self._variant_for(variant, verifier)
        sql, args = self._records_sql(v, graded, with_problem, verifier)
        rows = self._ordered_rows(sql, args, problem_ids, n)
        return [self._record(row, v, with_problem, scorer) for row in rows]

    def _variant_for(
        self, variant: VariantRow | int, verifier: str | None
    ) -> tuple[VariantRow, VerifierRow | None]:
        """The variant's row and the row of the verifier whose scores are asked for, each checked to exist."""
        v = self._variant_row("id", variant_id(variant))
        if v is None:
            raise StoreError(f"sample store {self.path} has no variant with id {variant_id(variant)}")
        scorer = self.verifier(verifier) if verifier is not None else None
        if verifier is not None and scorer is None:
            raise StoreError(f"sample store {self.path} holds no scores of verifier {verifier!r}")
        return v, scorer

    def _ordered_rows(
        self, sql: str, args: list, problem_ids: Sequence[str] | None, n: int | None
    ) -> list[tuple]:
        """The rows of a samples query (problem id first, sample index second) for samples 0..n-1 of
        `problem_ids`, by problem (in the given order, else by id), then by sample index."""
        if n is not None:
            sql += " AND s.sample_idx<?"
            args.append(n)
        if problem_ids is not None and len(problem_ids) <= 900:  # else filtered below (SQL variable limit)
            sql += f" AND s.problem_id IN ({','.join('?' * len(problem_ids))})"
            args.extend(problem_ids)
        rows = self.db.execute(sql + " ORDER BY s.problem_id, s.sample_idx", args).fetchall()
        if problem_ids is None:
            return rows
        wanted = {pid: i for i, pid in enumerate(problem_ids)}
        rows = [row for row in rows if row[0] in wanted]
        rows.sort(key=lambda row: wanted[row[0]])  # stable: sample order within a problem stays
        return rows

    def _records_sql(
        self, v: VariantRow, graded: bool, with_problem: bool, verifier: str | None, lean: bool = False
    ) -> tuple[str, list]:
        """The query of `records` up to its WHERE clause on the variant, and its arguments; `lean`: only
        what `problem_samples` reads (`SAMPLE_COLUMNS` with the verdict after the score), the completion
        as '' when it is text (its type is all that is checked)."""
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
        columns = (
            f"s.problem_id, s.sample_idx, CASE typeof(s.completion) WHEN 'text' THEN '' ELSE s.completion END, "
            f"s.n_tokens, s.finish_reason, {score}, g.verdict, g.correct, g.answer_class, {thinking}"
            if lean
            else f"s.problem_id, s.sample_idx, s.completion, s.n_tokens, s.finish_reason, {score}, g.answer, "
            f"g.extraction, g.verdict, g.correct, g.answer_class, g.grader, g.reason, {thinking}{problem}"
        )
        sql = (
            f"SELECT {columns} "
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
            (variant_id(variant), n, grader),
        ).fetchall()
        counts = dict(rows)
        return [pid for pid in problem_ids if counts.get(pid, 0) < n]

    def add_grades(self, variant: VariantRow | int, graded: Sequence[dict]) -> None:
        """Store grade fields of graded records, replacing older grades of the same samples, and the
        `think_closed` a grader inferred for samples that did not record it."""
        vid = variant_id(variant)
        rows = [
            (vid, r["problem_id"], r["sample_idx"], r.get("answer"), r.get("extraction"), r["verdict"],
             int(bool(r["correct"])), int(r["answer_class"]), r.get("grader") or "", r.get("reason"))
            for r in graded
        ]  # fmt: skip
        # Samples drawn elsewhere learn whether they closed a thinking block when graded (from their text);
        # a value the sampler recorded is kept.
        closed = [(int(bool(r["think_closed"])), vid, r["problem_id"], r["sample_idx"])
                  for r in graded if r.get("think_closed") is not None]  # fmt: skip
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO grades(variant_id, problem_id, sample_idx, answer, extraction, "
                "verdict, correct, answer_class, grader, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if closed and self._thinking:
                db.executemany(
                    "UPDATE samples SET think_closed=? WHERE variant_id=? AND problem_id=? AND sample_idx=? "
                    "AND think_closed IS NULL",
                    closed,
                )

    def problem_samples(
        self, variant: VariantRow | int, problem_ids: Sequence[str] | None = None, n: int | None = None,
        verifier: str | None = None,
    ) -> list[ProblemSamples]:  # fmt: skip
        """One `ProblemSamples` per problem (in `problem_ids` order, else by id), from samples 0..n-1 and
        their grades. Every such sample must be graded. Scores: those of `verifier` (an id) when named,
        else `samples.score` (scores of unknown origin; none unless imported).

        The same arrays as `to_problem_samples(records(...))`, checked alike, read as columns."""
        v, _ = self._variant_for(variant, verifier)
        sql, args = self._records_sql(v, False, False, verifier, lean=True)
        rows = self._ordered_rows(sql, args, problem_ids, n)
        for r in rows:
            if r[6] is None:
                raise StoreError(
                    f"sample store {self.path}: sample {r[1]} of problem {r[0]!r} (variant {v.name!r}) is "
                    "not graded yet; grade before scoring"
                )
        groups, start = [], 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i][0] != rows[start][0]:
                groups.append((rows[start][0], start, i))
                start = i
        if problem_ids is not None:
            present = {pid for pid, _, _ in groups}
            absent = [pid for pid in problem_ids if pid not in present]
            if absent:
                raise StoreError(
                    f"sample store {self.path}: no samples for problem(s) {', '.join(absent[:5])}; "
                    "sample them first"
                )
        if not rows:
            return []
        values = list(zip(*rows, strict=True))
        columns = dict(zip(SAMPLE_COLUMNS, values[:6] + values[7:], strict=True))
        return columns_to_problem_samples(columns, groups, f"sample store {self.path}")


def _thinking_columns(record: dict) -> tuple[int | None, int | None]:
    closed = record.get("think_closed")
    return (None if closed is None else int(bool(closed))), record.get("thinking_tokens")
