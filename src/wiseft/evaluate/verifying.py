"""Scoring samples that are already drawn with a verifier (`wiseft verify`): a sample store, whose scores
go back into it, or a JSONL file of sample records, written again with a score on each record.

Store (`verify_store`, or `verify_in_store` on a store the caller holds open): every sample of the chosen variants gets the verifier's score in the store's
`scores` table, beside the verifier's id; its identity is kept once in `verifiers`, so scores of several
verifiers live side by side. The work goes in chunks of `chunk` samples (in (problem, sample) order),
each committed in one transaction, and samples the same verifier id has scored are skipped: a run killed
at any moment and started again loses and duplicates nothing. What can be checked is checked before the
first write (the variants exist and hold samples; the problem text the verifier reads is known for each
of their problems); a verifier that fails mid-run (a NaN score, a sample over its length limit) raises,
and the run's writes are removed (`SampleStore.discard_run`): it leaves nothing behind.

What the verifier reads as the problem (`reads`, the CLI's --input): "question", the bare problem (`meta.question`, which
eval, sweep and the demo record), for a verifier that renders a chat template (its template writes the
turns itself, and a stored prompt may carry the sampler's chat template already); else "prompt", the
exact text the sampler continued (plain `prompt + completion` reward models such as the demo's toy
verifier, and the likelihood baseline, which must see what the sampler saw). `reads` overrides that
choice; a reading other than the default is part of the stored verifier id (`stored_identity`), so the
scores of the two readings never mix.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiseft.errors import ConfigError, OutputError, StoreError, VerifierError
from wiseft.records import read_records, write_records
from wiseft.store import SampleStore, VariantRow, is_store
from wiseft.verify import Item, Verifier, load_verifier

INPUTS = ("auto", "prompt", "question")
DEFAULT_CHUNK = 1024
MAX_CHUNK = 100_000
MISSING_SHOWN = 5
ALL_SAMPLES = 1 << 62  # `SampleStore.sample_counts(variant, n)` counts samples 0..n-1

# progress(variant, samples scored, samples in all): after each batch of the verifier
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VariantScores:
    """One variant's line of the closing table."""

    name: str
    samples: int  # samples of the variant (chosen records, for JSONL)
    before: int  # scored by this verifier before this run
    scored: int  # scored by this run
    seconds: float
    mean: float | None  # mean score over every scored sample of the variant

    @property
    def rate(self) -> float | None:
        return self.scored / self.seconds if self.scored and self.seconds > 0 else None


@dataclass(frozen=True)
class VerifyReport:
    identity: dict[str, Any]  # the verifier as stored: its `id` is the one scores carry
    variants: list[VariantScores]
    written: str
    seconds: float


# ------------------------------------------------------------------------------------------ choices


def default_input(verifier: Verifier) -> str:
    """ "question" for a verifier that renders a chat template, else "prompt" (see the module doc)."""
    return "question" if getattr(verifier, "template", None) == "chat" else "prompt"


def resolve_input(verifier: Verifier, choice: str) -> str:
    if choice not in INPUTS:
        raise ConfigError(f"--input must be one of {', '.join(INPUTS)}, got {choice!r}")
    return default_input(verifier) if choice == "auto" else choice


def stored_identity(identity: dict[str, Any], source: str, default: str) -> dict[str, Any]:
    """The verifier's identity as the store keeps it, with the problem text it read (`input`). Read the
    default way, its id is the verifier's own; read another way, the id covers that choice too."""
    if source == default:
        return {**identity, "input": source}
    digest = json.dumps({"verifier": identity["id"], "input": source}, sort_keys=True)
    return {
        **identity,
        "id": hashlib.sha256(digest.encode()).hexdigest()[:16],
        "verifier_id": identity["id"],
        "input": source,
    }


def check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        raise ConfigError(f"--chunk must be an integer from 1 to {MAX_CHUNK}, got {chunk!r}")
    return chunk


def problem_text(prompt: str | None, meta: dict | None, source: str) -> str | None:
    """The text the verifier reads as the problem: the stored prompt, or the bare question."""
    if source == "prompt":
        return prompt
    question = (meta or {}).get("question")
    return question if isinstance(question, str) else None


def _missing_text(where: str, source: str, missing: Sequence[str]) -> ConfigError:
    field = "prompt" if source == "prompt" else "meta.question"
    other = "question" if source == "prompt" else "prompt"
    return ConfigError(
        f"{where}: {len(missing)} problem(s) have no {field}, the problem text this verifier reads "
        f"(--input {source}): {', '.join(map(repr, missing[:MISSING_SHOWN]))}; record it, or pass "
        f"--input {other} if that field holds what the verifier should read"
    )


# ------------------------------------------------------------------------------------------ store


def store_variants(store: SampleStore, names: Sequence[str] | None) -> list[tuple[str, VariantRow]]:
    """(display name, variant) of the chosen variants: `names` (a name, meaning every variant of that
    name, or "name#id"), each of which must hold samples; by default every variant that holds samples.
    A name held by several variants is shown as "name#id"."""
    every = store.variants()
    counts = {v.name: 0 for v in every}
    for v in every:
        counts[v.name] += 1
    shown = [(v.name if counts[v.name] == 1 else f"{v.name}#{v.id}", v) for v in every]
    if not names:
        chosen = [(name, v) for name, v in shown if store.sample_counts(v, ALL_SAMPLES)]
        if not chosen:
            raise StoreError(f"sample store {store.path} holds no samples; sample or import some first")
        return chosen
    chosen = []
    for name in dict.fromkeys(names):
        found = [(s, v) for s, v in shown if name in (v.name, s)]
        if not found:
            have = ", ".join(s for s, _ in shown[:10]) or "none"
            raise StoreError(f"sample store {store.path} has no variant {name!r}; it has: {have}")
        chosen += [f for f in found if f not in chosen]
    for name, v in chosen:
        if not store.sample_counts(v, ALL_SAMPLES):
            raise StoreError(
                f"sample store {store.path} has no samples for variant {name!r}; sample it first (wiseft "
                "eval/sweep) or choose another --variant"
            )
    return chosen


def _texts(store: SampleStore, name: str, v: VariantRow, source: str) -> dict[str, str]:
    """problem_id → the text the verifier reads, for every problem the variant has samples of."""
    known = {p.problem_id: problem_text(p.prompt, p.meta, source) for p in store.problems(v.task)}
    wanted = store.sample_counts(v, ALL_SAMPLES)
    missing = [pid for pid in wanted if known.get(pid) is None]
    if missing:
        raise _missing_text(f"sample store {store.path}, variant {name!r} (task {v.task})", source, missing)
    return {pid: known[pid] for pid in wanted}  # type: ignore[misc]


def verify_store(
    path: str | Path, verifier: Verifier, *, variants: Sequence[str] | None = None, reads: str = "auto",
    chunk: int = DEFAULT_CHUNK, progress: Progress | None = None, config: dict | None = None,
) -> VerifyReport:  # fmt: skip
    """Score every sample of `variants` (names; default all) of the store at `path` with `verifier` (see
    the module doc); `config` is recorded with the run. Opens the store for writing (its lock)."""
    check_chunk(chunk)
    with SampleStore(path) as store:
        return verify_in_store(
            store, verifier, variants=variants, reads=reads, chunk=chunk, progress=progress, config=config
        )


def verify_in_store(
    store: SampleStore, verifier: Verifier, *, variants: Sequence[str] | None = None, reads: str = "auto",
    chunk: int = DEFAULT_CHUNK, progress: Progress | None = None, config: dict | None = None,
) -> VerifyReport:  # fmt: skip
    """`verify_store` on a store already open for writing (e.g. by an evaluation that holds its lock)."""
    check_chunk(chunk)
    start = time.perf_counter()
    source = resolve_input(verifier, reads)
    identity = stored_identity(verifier.identity, source, default_input(verifier))
    chosen = store_variants(store, variants)
    texts = {v.id: _texts(store, name, v, source) for name, v in chosen}
    run_config = {**(config or {}), "verifier": identity["id"], "input": source, "chunk": chunk,
                  "variants": [name for name, _ in chosen]}  # fmt: skip
    run_id = store.begin_run("verify", run_config)
    store.add_verifier(identity)
    try:
        rows = [
            _score_variant(store, name, v, verifier, identity["id"], texts[v.id], chunk, run_id, progress)
            for name, v in chosen
        ]
    except VerifierError:
        store.discard_run(run_id, identity["id"])
        raise
    store.end_run(run_id)
    return VerifyReport(identity, rows, str(store.path), time.perf_counter() - start)


def _score_variant(
    store: SampleStore, name: str, v: VariantRow, verifier: Verifier, vid: str, texts: dict[str, str],
    chunk: int, run_id: int, progress: Progress | None,
) -> VariantScores:  # fmt: skip
    total, before, _ = store.score_counts(v, vid)
    done, after, t0 = before, None, time.perf_counter()
    if progress is not None:
        progress(name, done, total)
    while rows := store.unscored(v, vid, chunk, after):
        items = [Item(texts[pid], completion, f"{name}/{pid}#{idx}") for pid, idx, completion in rows]
        tick = None if progress is None else (lambda d, _t, base=done: progress(name, base + d, total))
        result = verifier.score(items, tick)
        store.add_scores(
            v,
            vid,
            [(pid, idx, float(s)) for (pid, idx, _), s in zip(rows, result.scores, strict=True)],
            run_id,
        )
        after = rows[-1][:2]
        done += len(rows)
    seconds = time.perf_counter() - t0
    total, scored, mean = store.score_counts(v, vid)
    return VariantScores(name, total, before, scored - before, seconds, mean)


# ------------------------------------------------------------------------------------------ JSONL


def jsonl_output(samples: str | Path, output: str | Path | None, force: bool) -> Path:
    """Where the scored JSONL goes (default SAMPLES.scored.jsonl), checked before any work."""
    samples = Path(samples)
    out = Path(output) if output else samples.with_name(samples.stem + ".scored.jsonl")
    if out.resolve() == samples.resolve():
        raise OutputError(f"-o/--output {out} is the samples file itself; choose another path")
    if out.exists() and not force:
        raise OutputError(f"output {out} already exists; choose another -o/--output or pass --force")
    return out


def chosen_records(records: Sequence[dict], names: Sequence[str] | None, where: str) -> list[int]:
    """Indices of the records of the chosen variants (default all), checked to be some."""
    if not names:
        return list(range(len(records)))
    wanted = set(names)
    picked = [i for i, r in enumerate(records) if r.get("variant") in wanted]
    have = set(r.get("variant") for r in records)
    absent = [n for n in dict.fromkeys(names) if n not in have]
    if absent:
        held = ", ".join(sorted(str(h) for h in have if h is not None)[:10]) or "no variant names"
        raise ConfigError(f"{where} has no samples for variant {absent[0]!r}; it holds: {held}")
    return picked


def verify_jsonl(
    samples: str | Path, verifier: Verifier, output: str | Path, *, variants: Sequence[str] | None = None,
    reads: str = "auto", progress: Progress | None = None, records: Sequence[dict] | None = None,
) -> VerifyReport:  # fmt: skip
    """Score the records of `variants` (default all) of a JSONL file and write every record to `output`,
    the chosen ones with `score`, `verifier` and `vote_transform` (atomically; other records as they were).
    `records`: the file's records when they are read already."""
    start = time.perf_counter()
    records = read_records(samples) if records is None else records
    picked = chosen_records(records, variants, str(samples))
    source = resolve_input(verifier, reads)
    identity = stored_identity(verifier.identity, source, default_input(verifier))
    texts = [problem_text(records[i].get("prompt"), records[i].get("meta"), source) for i in picked]
    missing = list(
        dict.fromkeys(records[i]["problem_id"] for i, t in zip(picked, texts, strict=True) if t is None)
    )
    if missing:
        raise _missing_text(str(samples), source, missing)
    items = [
        Item(text, records[i]["completion"], f"line {i + 1} ({records[i]['problem_id']}#{records[i]['sample_idx']})")
        for i, text in zip(picked, texts, strict=True)
    ]  # fmt: skip
    t0 = time.perf_counter()
    tick = None if progress is None else (lambda d, t: progress(str(samples), d, t))
    scores = verifier.score(items, tick).scores
    seconds = time.perf_counter() - t0
    out = [dict(r) for r in records]
    for i, s in zip(picked, scores, strict=True):
        out[i].update(score=float(s), verifier=identity["id"], vote_transform=identity["vote_transform"])
    write_records(output, out)
    mean = float(scores.mean()) if len(scores) else None
    row = VariantScores(str(samples), len(picked), 0, len(picked), seconds, mean)
    return VerifyReport(identity, [row], str(output), time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ both


def verify_file(
    samples: str | Path, verifier_path: str | Path, kind: str, options: dict[str, Any], *,
    variants: Sequence[str] | None = None, reads: str = "auto", output: str | Path | None = None,
    force: bool = False, chunk: int = DEFAULT_CHUNK, progress: Progress | None = None,
) -> VerifyReport:  # fmt: skip
    """`wiseft verify`: check the input (and output) first, then load the verifier (`load_verifier(
    verifier_path, kind, **options)`) and score a store (`verify_store`) or a JSONL file (`verify_jsonl`)."""
    check_chunk(chunk)
    if reads not in INPUTS:
        raise ConfigError(f"--input must be one of {', '.join(INPUTS)}, got {reads!r}")
    config = {"verifier_path": str(verifier_path), "kind": kind, "options": options}
    if is_store(samples):
        if output:
            raise OutputError(
                f"-o/--output does not apply to a sample store ({samples}): scores are written into the "
                "store; use `wiseft store export` for a JSONL copy"
            )
        SampleStore.check_free(samples)
        with SampleStore(samples, writer=False) as store:  # the variants are checked before the model loads
            store_variants(store, variants)
        verifier = load_verifier(verifier_path, kind, **options)
        return verify_store(
            samples, verifier, variants=variants, reads=reads, chunk=chunk, progress=progress, config=config
        )
    if not Path(samples).is_file():
        raise ConfigError(f"samples {samples} do not exist; give a sample store or a JSONL of sample records")
    out = jsonl_output(samples, output, force)
    records = read_records(samples)
    chosen_records(records, variants, str(samples))
    verifier = load_verifier(verifier_path, kind, **options)
    return verify_jsonl(
        samples, verifier, out, variants=variants, reads=reads, progress=progress, records=records
    )
