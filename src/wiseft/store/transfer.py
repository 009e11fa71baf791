"""Sample records in and out of the store as JSONL (`wiseft store export/import`): `JsonlTransfer`, a part
of `SampleStore`, and the pure checks of imported records."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from wiseft.atomic import atomic_write_text
from wiseft.errors import StoreError
from wiseft.records import PROBLEM_FIELDS, read_records
from wiseft.store.rows import VariantRow


class JsonlTransfer:
    """The store's JSONL export and import (mixed into `SampleStore`)."""

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
