"""What the lm-eval and lighteval exports share: a store's graded samples gathered per problem, the
per-problem metrics, names safe as directory and file names, and an output tree that appears whole.

A variant of the store plays the part of a "model" in the harnesses' layouts (one directory each); its
task is the harness task. Every exported sample must be graded, and every problem of a variant must
have the same number of samples n (the harnesses' `repeats` / `num_samples`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from wiseft.atomic import atomic_dir, clean_stale_temps, temp_sibling
from wiseft.errors import ConfigError, OutputError, StoreError
from wiseft.grids import powers_of_two
from wiseft.metrics import pass_at_k
from wiseft.store import SampleStore, VariantRow

SAMPLE_LISTS = ("sample_idx", "correct", "verdict", "answer", "answer_class", "n_tokens", "finish_reason")
SCORE_LISTS = ("score", "verifier")  # added to a variant's lists when any of its samples is scored
MAX_NAME_BYTES = 150  # a directory or file name part; file systems allow 255 bytes per name
DATE_ID = re.compile(r"^[0-9][0-9T.\-]*$")


@dataclass(frozen=True)
class ProblemDoc:
    """One problem of one variant: what the store knows of it and its n graded samples (by sample_idx)."""

    doc_id: int
    problem_id: str
    prompt: str | None
    gold: str | None
    meta: dict
    samples: tuple[dict, ...]
    lists: tuple[str, ...] = SAMPLE_LISTS

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def c(self) -> int:
        return sum(bool(r["correct"]) for r in self.samples)

    def sample_lists(self) -> dict[str, list]:
        """Each per-sample field as a list aligned with the completions."""
        return {name: [r.get(name) for r in self.samples] for name in self.lists}


@dataclass(frozen=True)
class VariantDocs:
    """A variant's problems in export order, its directory name, n, the k values and the grader."""

    variant: VariantRow
    dirname: str
    task: str
    docs: list[ProblemDoc]
    n: int
    ks: tuple[int, ...]
    grader: str

    @property
    def fewshot(self) -> int:
        """Few-shot examples in the prompt: what the variant's sampling settings say, else 0."""
        value = self.variant.sampling.get("fewshot", 0)
        return value if isinstance(value, int) else 0


def gather(
    store: SampleStore, variants: Sequence[VariantRow], ks: Sequence[int] | None, verifier: str | None = None
) -> list[VariantDocs]:
    """Every variant's graded samples by problem, checked (all graded, one n) before anything is written.
    Scores are those of one verifier (`SampleStore.choose_verifier`: `verifier` names it)."""
    scorer = store.choose_verifier(variants, verifier)
    vid = scorer.id if scorer is not None else None
    names = unique_dirnames([v.name for v in variants])
    return [_gather_one(store, v, dirname, ks, vid) for v, dirname in zip(variants, names, strict=True)]


def _gather_one(
    store: SampleStore, v: VariantRow, dirname: str, ks: Sequence[int] | None, verifier: str | None
) -> VariantDocs:
    records = store.records(v, with_problem=True, verifier=verifier)
    if not records:
        raise StoreError(
            f"sample store {store.path}: variant {v.name!r} has no samples; choose variants with --variant"
        )
    ungraded = sum("verdict" not in r for r in records)
    if ungraded:
        raise StoreError(
            f"sample store {store.path}: {ungraded} of the {len(records)} samples of variant {v.name!r} are "
            f"not graded; run `wiseft grade {store.path} --data DIR` first (these files carry correctness "
            "metrics)"
        )
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["problem_id"], []).append(r)
    sizes = sorted({len(recs) for recs in by_problem.values()})
    if len(sizes) > 1:
        raise StoreError(
            f"sample store {store.path}: variant {v.name!r} has {sizes[0]} samples for some problems and "
            f"{sizes[-1]} for others; finish sampling (rerun it) or export --format jsonl"
        )
    n = sizes[0]
    order = problem_order(list(by_problem), [p.problem_id for p in store.problems(v.task)])
    lists = SAMPLE_LISTS + (SCORE_LISTS if any(r.get("score") is not None for r in records) else ())
    docs = [_doc(i, pid, by_problem[pid], lists) for i, pid in order]
    graders = sorted({r["grader"] for r in records if r.get("grader")})
    return VariantDocs(v, dirname, v.task, docs, n, _ks(ks, n, v.name), ", ".join(graders))


def _doc(doc_id: int, pid: str, recs: list[dict], lists: tuple[str, ...]) -> ProblemDoc:
    recs = sorted(recs, key=lambda r: r["sample_idx"])
    first = recs[0]
    return ProblemDoc(
        doc_id, pid, first.get("prompt"), first.get("gold"), first.get("meta") or {}, tuple(recs), lists
    )


def problem_order(ids: Sequence[str], task_order: Sequence[str]) -> list[tuple[int, str]]:
    """(doc_id, problem_id) in export order: the task's order as the store recorded it, then the rest by
    id (by value when every id is a whole number). doc_id is then the id itself (GSM8K, MATH: the line of
    the dataset, which is the harnesses' doc index too), else the position in this order."""
    rank = {pid: i for i, pid in enumerate(task_order)}
    numeric = all(pid.isascii() and pid.isdigit() for pid in ids)
    ordered = sorted(ids, key=lambda pid: (rank.get(pid, len(rank)), int(pid) if numeric else 0, pid))
    if numeric:
        return [(int(pid), pid) for pid in ordered]
    return list(enumerate(ordered))


def _ks(ks: Sequence[int] | None, n: int, name: str) -> tuple[int, ...]:
    if ks is None:
        return powers_of_two(n)
    if max(ks) > n:
        raise ConfigError(
            f"--k {max(ks)} is larger than the {n} samples per problem of variant {name!r}; drop k > {n}"
        )
    return tuple(ks)


def pass_values(doc: ProblemDoc, ks: Sequence[int]) -> dict[int, float]:
    """Unbiased Pass@k of one problem for each k (1 − C(n−c, k)/C(n, k))."""
    return {k: pass_at_k(doc.n, doc.c, k) for k in ks}


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean (sample standard deviation / √N), as both harnesses report it; None
    for fewer than two values."""
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.std(ddof=1) / np.sqrt(arr.shape[0]))


def gen_kwargs(v: VariantRow) -> dict:
    """The variant's sampling settings under lm-eval's generation-argument names (those it has)."""
    s = v.sampling
    out: dict = {}
    if isinstance(s.get("stop"), (list, tuple)):
        out["until"] = list(s["stop"])
    if v.temperature is not None:
        out["do_sample"] = v.temperature > 0
        out["temperature"] = v.temperature
    for ours, theirs in (("top_p", "top_p"), ("top_k", "top_k"), ("max_new_tokens", "max_gen_toks")):
        if s.get(ours) is not None:
            out[theirs] = s[ours]
    return out


# ------------------------------------------------------------------------------------------ names


def safe_name(name: str) -> str:
    """A directory/file name part: lm-eval's model-name rule (runs of `"<>:/|\\?*[]` become `__`), never
    empty, `.` or `..`, and at most MAX_NAME_BYTES bytes (a long name keeps its start and a hash)."""
    out = re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)
    out = "".join(ch for ch in out if ch.isprintable())
    if out in ("", ".", ".."):
        out = f"_{out}_"
    if len(out.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        out = out.encode()[: MAX_NAME_BYTES - 14].decode(errors="ignore") + "__" + digest
    return out


def unique_dirnames(names: Sequence[str]) -> list[str]:
    """`safe_name` of each name; a name taken twice gets `__2`, `__3`, … in order."""
    out, seen = [], set()
    for name in names:
        base = candidate = safe_name(name)
        i = 1
        while candidate in seen:
            i += 1
            candidate = f"{base}__{i}"
        seen.add(candidate)
        out.append(candidate)
    return out


def date_id(now: datetime | None = None) -> str:
    """The harnesses' run stamp: the ISO time with `:` replaced by `-` (2025-01-31T12-00-00.123456)."""
    return (now or datetime.now()).isoformat().replace(":", "-")


def check_date_id(value: str) -> str:
    if not DATE_ID.match(value):
        raise ConfigError(f"date id {value!r} must look like 2025-01-31T12-00-00.123456")
    return value


# ------------------------------------------------------------------------------------------ output


def check_output(out: Path, force: bool) -> None:
    """Fail before any work when `out` exists (without --force) or is not a directory."""
    if out.exists() and not force:
        raise OutputError(f"output {out} already exists; choose another -o/--output or pass --force")
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"output {out} exists and is not a directory; remove it or choose another -o/--output"
        )


@contextlib.contextmanager
def output_tree(out: Path, force: bool) -> Iterator[Path]:
    """A temporary directory whose files appear under `out` when the block succeeds: the whole directory
    by one rename when `out` is new; with --force into an existing `out`, file by file (files of the same
    name are replaced, all others are left alone)."""
    check_output(out, force)
    if not out.exists():
        with atomic_dir(out) as tmp:
            yield tmp
        return
    clean_stale_temps(out)
    tmp = temp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync(path)
            target = out / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
