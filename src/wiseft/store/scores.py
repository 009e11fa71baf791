"""Verifier scores in the store (`wiseft verify`): the `verifiers` and `scores` tables, read and written by
the methods of `VerifierScores`, a part of `SampleStore` (it uses the store's connection, path and
transactions)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

from wiseft.errors import StoreError
from wiseft.store.rows import VariantRow, VerifierRow, json_object, variant_id


class VerifierScores:
    """The store's verifier-score methods (mixed into `SampleStore`)."""

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
        return VerifierRow(row[0], row[1], row[2], json_object(row[3])) if row else None

    def scored_by(self, variants: Sequence[VariantRow | int] | None = None) -> dict[str, int]:
        """Verifier id → samples it scored (of `variants`, default all), by id."""
        if not self._scores:
            return {}
        sql, args = "SELECT verifier_id, COUNT(*) FROM scores", []
        if variants is not None:
            ids = [variant_id(v) for v in variants]
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
            "SELECT COUNT(*) FROM samples WHERE variant_id=?", (variant_id(variant),)
        ).fetchone()
        scored: tuple = (0, None)
        if self._scores:
            scored = self.db.execute(
                "SELECT COUNT(*), AVG(score) FROM scores WHERE variant_id=? AND verifier_id=?",
                (variant_id(variant), verifier_id),
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
        args: list = [variant_id(variant), verifier_id]
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
        vid = variant_id(variant)
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
