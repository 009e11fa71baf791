"""A report straight from a sample store: every graded variant → `metrics.summarize` → results dict.

This is for a store without its run directory (copied from a cluster, or a sweep still running: WAL
lets us read while it writes). The store knows each variant's kind, temperature, step and recipe, but
not which variant its sweep chose, so the best variant here is the highest Pass@k among the mixes on all
problems, and "how" says that this is in-sample.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from wiseft.errors import ConfigError, StoreError
from wiseft.grids import powers_of_two
from wiseft.metrics import DEFAULT_VOTE_TRANSFORM, length_ratio, summarize
from wiseft.report.sources import variant_from_name
from wiseft.results import KINDS, RunResults, Selection, VariantResult
from wiseft.store import SampleStore, VerifierRow


def results_from_store(
    path: str | os.PathLike, *, seed: int = 0, n_boot: int = 1000, length_reference: str | None = None
) -> RunResults:
    """Every graded variant of the store summarised; with `length_reference`, each variant's mean length
    relative to that variant's on the same problems (`metrics.length_ratio`, paired interval)."""
    path = Path(path)
    with SampleStore(path, writer=False) as store:
        latest = {}
        for v in store.variants():  # a name sampled again with other settings: the latest one counts
            latest[v.name] = v
        variants, skipped, samples = [], [], {}
        scorer, note = _verifier(store, list(latest.values()))
        for v in latest.values():
            try:
                problems = store.problem_samples(v, verifier=scorer.id if scorer else None)
            except StoreError as exc:  # samples not graded yet (a sweep still running)
                skipped.append(f"{v.name}: {exc}")
                continue
            if not problems:
                skipped.append(f"{v.name}: no samples")
                continue
            n = min(p.n for p in problems)
            transform = (scorer.vote_transform if scorer else None) or DEFAULT_VOTE_TRANSFORM
            summary = summarize(
                problems, powers_of_two(n), seed=seed, n_boot=n_boot, vote_transform=transform
            )
            variants.append(_entry(v, summary))
            samples[v.name] = problems
        config, graders = _run_info(store, list(latest.values()))
    if not variants:
        raise ConfigError(
            f"sample store {path} holds no graded variant to report on"
            + (f" ({len(skipped)} not graded yet; run `wiseft grade` or finish the sweep)" if skipped else "")
        )
    if length_reference is not None:
        _length_ratios(variants, samples, length_reference, path, seed, n_boot)
    if skipped:
        config = {**config, "skipped_variants": skipped}
    if note:
        config = {**config, "verifier_note": note}
    versions = {"grader": ", ".join(graders) or None, "store": str(path)}
    return RunResults(config, versions, variants, _best(variants))


def _length_ratios(variants, samples: dict, reference: str, path: Path, seed: int, n_boot: int) -> None:
    if reference not in samples:
        raise ConfigError(
            f"--length-reference {reference!r}: sample store {path} has no graded variant of that name "
            f"(it has: {', '.join(sorted(samples)) or 'none'})"
        )
    ref = {p.problem_id: p for p in samples[reference]}
    if any(p.n_tokens is None for p in ref.values()):
        raise ConfigError(
            f"--length-reference {reference!r}: its samples in sample store {path} carry no token counts "
            "(n_tokens), so no length can be compared; import samples with n_tokens or drop the flag"
        )
    for v in variants:
        mine = [p for p in samples[v.name] if p.problem_id in ref]
        if not mine:  # no problem in common with the reference: no ratio to give
            continue
        ratio = length_ratio(mine, [ref[p.problem_id] for p in mine], seed=seed, n_boot=n_boot)
        if ratio is not None:
            v.summary.setdefault("tokens", {})["length_ratio"] = {"reference": reference, **ratio}


def _verifier(store: SampleStore, variants: list) -> tuple[VerifierRow | None, str | None]:
    """The verifier whose scores give best@k and wmaj@k: the only one that scored these variants; with
    several, none (the note says why: `wiseft score --verifier ID` picks one)."""
    try:
        return store.choose_verifier(variants), None
    except StoreError as exc:
        return None, f"best@k and wmaj@k left out: {exc}"


def _entry(v, summary: dict) -> VariantResult:
    """A results variant from a store variant (kind, T, step stored; δ from the recipe)."""
    delta = (v.recipe or {}).get("delta")
    entry = {
        "name": v.name,
        "kind": v.kind,
        "delta": float(delta) if isinstance(delta, (int, float)) and not isinstance(delta, bool) else None,
        "temperature": v.temperature,
        "step": v.step,
        "summary": summary,
    }
    if v.kind not in KINDS or v.kind == "imported":  # from JSONL: read what the name says, else "imported"
        guess = variant_from_name(v.name, summary)
        entry["kind"] = guess["kind"]
        for key in ("delta", "temperature", "step"):
            if entry[key] is None:
                entry[key] = guess[key]
    return VariantResult(**entry)


def _run_info(store, variants: list) -> tuple[dict, list[str]]:
    """What made the store and the graders used (read-only queries on the store): the latest run's command
    and resolved config; for variants brought in by `wiseft store import`, the command, the task and the
    JSONL file each came from."""
    try:
        run = store.latest_run()
        graders = store.graders()
    except sqlite3.Error as exc:  # an older or damaged store
        raise StoreError(f"sample store {store.path}: cannot read its runs or grades ({exc})") from exc
    config: dict = {}
    if run is not None:
        config = {"command": run["command"], "wiseft_version": run["wiseft_version"], **run["config"]}
    imported = [
        {"variant": v.name, "task": v.task, "from": (v.model_hashes or {}).get("source")}
        for v in variants
        if v.kind == "imported"
    ]
    if imported:
        config = {"command": "store import", **config} if run is None else config
        config["imported"] = imported
    return config, graders


def _best(variants: list[VariantResult]) -> Selection | None:
    mixes = [v for v in variants if v.kind == "mix"]
    if not mixes:
        return None
    metric = f"pass@{min(max(v.summary['ks']) for v in mixes)}"
    how = (
        f"highest {metric} among the {len(mixes)} mixes on all problems in the store "
        "(in-sample: the store records no validation split; a sweep's results.json does)"
    )
    return Selection.highest(mixes, metric, how)
