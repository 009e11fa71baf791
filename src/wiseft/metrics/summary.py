"""Summaries of graded samples: `summarize` (every metric of one variant, with intervals; its shape is in
docs/ARCHITECTURE.md), breakdowns by problem fields, diversity, tokens, thinking statistics, length ratios,
and `score_records` over sample records."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wiseft.errors import MetricError
from wiseft.limits import check_n_boot
from wiseft.metrics.estimators import (
    MAJ_EXACT_MAX_N,
    MAJ_MC_SUBSETS,
    _check_k,
    _class_counts,
    _maj_exact_memo,
    _maj_monte_carlo,
    _pattern,
    best_at_k,
    pass_at_k,
)
from wiseft.metrics.intervals import (
    RHO_EDGES,
    _percentiles,
    bias_variance,
    bootstrap_ci,
    resample_blocks,
)
from wiseft.metrics.weighted import (
    DEFAULT_VOTE_TRANSFORM,
    _groups,
    _wmaj,
    vote_weights,
)
from wiseft.records import (
    GROUP_FIELDS,
    ProblemSamples,
    by_variant,
    choose_scores,
    group_value,
    to_problem_samples,
)


def diversity(problems: Sequence[ProblemSamples], seed: int = 0, n_boot: int = 1000) -> dict:
    """Mean number and fraction of distinct answer classes per problem (with 95% bootstrap intervals
    over problems, `ci`), and the histogram of ρ."""
    distinct = np.array([np.unique(p.classes[p.classes >= 0]).shape[0] for p in problems], dtype=np.float64)
    ns = np.array([p.n for p in problems], dtype=np.float64)
    rho = np.array([p.c / p.n for p in problems])
    hist, _ = np.histogram(rho, bins=np.asarray(RHO_EDGES))
    _, lo, hi = bootstrap_ci(np.stack([distinct, distinct / ns], axis=1), seed=seed, n_boot=n_boot)
    return {
        "mean_distinct": float(distinct.mean()),
        "frac_distinct": float((distinct / ns).mean()),
        "ci": {"mean_distinct": [float(lo[0]), float(hi[0])], "frac_distinct": [float(lo[1]), float(hi[1])]},
        "rho_hist": [int(x) for x in hist],
        "rho_edges": list(RHO_EDGES),
    }


def token_stats(problems: Sequence[ProblemSamples], seed: int = 0, n_boot: int = 1000) -> dict:
    """Mean (with its 95% bootstrap interval over problems, `ci`) and median completion length, and the
    share of samples cut by the length limit (None where unknown)."""
    out: dict = {"mean": None, "median": None, "truncated_frac": None}
    if all(p.n_tokens is not None for p in problems):
        tokens = np.concatenate([p.n_tokens for p in problems])
        out["mean"] = float(tokens.mean())
        out["median"] = float(np.median(tokens))
        per_problem = np.array([p.n_tokens.mean() for p in problems]) * len(problems) * _weights(problems)
        _, lo, hi = bootstrap_ci(per_problem, seed=seed, n_boot=n_boot)
        out["ci"] = {"mean": [float(lo), float(hi)]}
    if all(p.truncated is not None for p in problems):
        out["truncated_frac"] = float(np.concatenate([p.truncated for p in problems]).mean())
    return out


def _weights(problems: Sequence[ProblemSamples]) -> np.ndarray:
    """Each problem's share of all samples: per-problem means scaled by these average to the sample mean."""
    ns = np.array([p.n for p in problems], dtype=np.float64)
    return ns / ns.sum()


def thinking_stats(problems: Sequence[ProblemSamples], seed: int = 0, n_boot: int = 1000) -> dict | None:
    """Think % (the share of samples whose thinking block closed) and mean thinking and answer tokens per
    sample, each {"value", "lo", "hi"} with a 95% bootstrap interval over problems; None when the samples
    do not say whether they closed a thinking block. Samples graded without a tokenizer (`wiseft grade`
    of a JSONL file) carry `think_closed` but no thinking token counts: then Think % alone."""
    if not problems or any(p.think_closed is None for p in problems):
        return None
    scale = len(problems) * _weights(problems)
    counted = all(p.thinking_tokens is not None for p in problems)
    columns = [np.array([f(p) for p in problems]) * scale for f in (
        lambda p: p.think_closed.mean(),
        lambda p: p.thinking_tokens.mean() if counted else np.nan,
        lambda p: (p.n_tokens - p.thinking_tokens).mean() if counted and p.n_tokens is not None else np.nan,
    )]  # fmt: skip
    names = ["think_frac", "thinking_tokens", "answer_tokens"]
    keep = [i for i, c in enumerate(columns) if not np.isnan(c).any()]
    columns, names = [columns[i] for i in keep], [names[i] for i in keep]
    mean, lo, hi = bootstrap_ci(np.stack(columns, axis=1), seed=seed, n_boot=n_boot)
    return {
        name: {"value": float(mean[i]), "lo": float(lo[i]), "hi": float(hi[i])}
        for i, name in enumerate(names)
    }


def per_problem_values(
    problems: Sequence[ProblemSamples],
    ks: Sequence[int],
    seed: int = 0,
    vote_transform: str = DEFAULT_VOTE_TRANSFORM,
) -> tuple[list[str], np.ndarray]:
    """The per-problem value of every metric (columns named like "pass@4"); summaries average these.

    With scores on every problem, best@k and weighted maj@k ("wmaj@k", votes by `vote_transform`) join.
    """
    if not problems:
        raise MetricError("no problems to score: the graded input is empty")
    ks = _normalise_ks(ks)
    n_min = min(p.n for p in problems)
    worst = min(problems, key=lambda p: p.n)
    for k in ks:
        _check_k(n_min, k, f" for problem {worst.problem_id or '?'}" if worst.problem_id else "")
    with_scores = all(p.scores is not None for p in problems)
    names = ["pass@1"] + [f"pass@{k}" for k in ks if k != 1] + [f"maj@{k}" for k in ks]
    if with_scores:
        names += [f"best@{k}" for k in ks] + [f"wmaj@{k}" for k in ks]
    table = np.empty((len(problems), len(names)))
    for row, p in enumerate(problems):
        counts, is_correct, unparsed = _class_counts(p.classes, p.correct)
        values = [p.c / p.n] + [pass_at_k(p.n, p.c, k) for k in ks if k != 1]
        if not is_correct.any():
            values += [0.0] * len(ks)
        elif p.n <= MAJ_EXACT_MAX_N:
            values += _maj_exact_memo(_pattern(counts, is_correct), unparsed, tuple(ks))
        else:
            values += [_maj_monte_carlo(p.classes, p.correct, k, seed, MAJ_MC_SUBSETS) for k in ks]
        if with_scores:
            values += [best_at_k(p.scores, p.correct, k) for k in ks]
            values += _wmaj_row(p, ks, vote_transform, seed)
        table[row] = values
    return names, table


def _wmaj_row(p: ProblemSamples, ks: Sequence[int], transform: str, seed: int) -> list[float]:
    try:
        weights = vote_weights(p.scores, transform)
    except MetricError as exc:
        raise MetricError(f"problem {p.problem_id or '?'}: {exc}") from exc
    group, good = _groups(p.classes, p.correct)
    return [_wmaj(group, weights, good, k, "auto", seed, MAJ_MC_SUBSETS) for k in ks]


def _normalise_ks(ks: Sequence[int]) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MetricError(f"k values must be positive integers, got {k!r}")
        if int(k) not in out:
            out.append(int(k))
    if not out:
        raise MetricError("give at least one k (e.g. --k 1,2,4)")
    return sorted(out)


@dataclass(frozen=True)
class ProblemTable:
    """What `per_problem_values` returned (read-only), with the arguments that decide it, so that a
    caller computing it once can hand it to `summarize` and to paired comparisons (`paired.PairedTables`)."""

    names: tuple[str, ...]
    values: np.ndarray
    ks: tuple[int, ...]
    seed: int
    vote_transform: str

    def matches(self, ks: Sequence[int], seed: int, vote_transform: str = DEFAULT_VOTE_TRANSFORM) -> bool:
        return (self.ks, self.seed, self.vote_transform) == (tuple(_normalise_ks(ks)), seed, vote_transform)


def problem_table(
    problems: Sequence[ProblemSamples], ks: Sequence[int], seed: int = 0,
    vote_transform: str = DEFAULT_VOTE_TRANSFORM,
) -> ProblemTable:  # fmt: skip
    names, values = per_problem_values(problems, ks, seed=seed, vote_transform=vote_transform)
    values.setflags(write=False)
    return ProblemTable(tuple(names), values, tuple(_normalise_ks(ks)), seed, vote_transform)


def summarize(
    problems: Sequence[ProblemSamples],
    ks: Sequence[int],
    seed: int = 0,
    n_boot: int = 1000,
    vote_transform: str = DEFAULT_VOTE_TRANSFORM,
    table: ProblemTable | None = None,
) -> dict:
    """Every metric of DESIGN §4 with bootstrap 95% intervals, in the shape of docs/ARCHITECTURE.md.

    With scores, best@k and wmaj@k are included and the summary records the `vote_transform` that turned
    scores into votes (pass the verifier's own: `Verifier.identity["vote_transform"]`). `table`: these
    problems' `problem_table` for the same ks, seed and vote transform, when the caller has it already.
    """
    ks = _normalise_ks(ks)
    if table is None:
        table = problem_table(problems, ks, seed=seed, vote_transform=vote_transform)
    elif not table.matches(ks, seed, vote_transform):
        raise MetricError(
            f"the per-problem table was computed for ks {list(table.ks)}, seed {table.seed} and votes by "
            f"{table.vote_transform!r}, not for ks {ks}, seed {seed} and {vote_transform!r}"
        )
    names, table = list(table.names), table.values
    mean, lo, hi = bootstrap_ci(table, seed=seed, n_boot=n_boot)
    metrics = {
        name: {"value": float(mean[i]), "lo": float(lo[i]), "hi": float(hi[i])}
        for i, name in enumerate(names)
    }
    rho = table[:, names.index("pass@1")]
    pass_k = {k: metrics[f"pass@{k}"]["value"] for k in ks}
    tokens = token_stats(problems, seed=seed, n_boot=n_boot)
    if tokens["mean"]:  # accuracy per 1,000 generated tokens: what a correct answer costs in length
        tokens["acc_per_1k"] = 1000.0 * metrics["pass@1"]["value"] / tokens["mean"]
    thinking = thinking_stats(problems, seed=seed, n_boot=n_boot)
    ns = sorted({p.n for p in problems})
    summary = {
        "n_problems": len(problems),
        "n": ns[0],
        "n_max": ns[-1],
        "ks": ks,
        "seed": seed,
        "n_boot": n_boot,
        "metrics": metrics,
        "bias_variance": bias_variance(rho, ks, pass_k, seed=seed, n_boot=n_boot),
        "diversity": diversity(problems, seed=seed, n_boot=n_boot),
        "tokens": tokens,
        **({"thinking": thinking} if thinking is not None else {}),
    }
    if any(name.startswith("wmaj@") for name in names):
        summary["vote_transform"] = vote_transform
    return summary


def breakdown(
    problems: Sequence[ProblemSamples],
    labels: dict[str, Sequence[object]],
    ks: Sequence[int],
    seed: int = 0,
    n_boot: int = 1000,
) -> dict:
    """Pass@1, and Pass@k and maj@k at the largest k, per value of each grouping field (e.g. MATH's subject
    and level), each with its 95% bootstrap interval over that group's problems.

    `labels[field][i]` is problem i's value of the field (None: the problem is left out of that field).
    Returns {field: [{"value", "n_problems", "metrics": {name: {"value", "lo", "hi"}}}, …]} with the
    values in natural order (Level 2 before Level 10)."""
    ks = _normalise_ks(ks)
    names, table = per_problem_values(problems, ks, seed=seed)
    shown = list(dict.fromkeys(["pass@1", f"pass@{ks[-1]}", f"maj@{ks[-1]}"]))
    cols = [names.index(n) for n in shown]
    out: dict = {}
    for field, values in labels.items():
        if len(values) != len(problems):
            raise MetricError(f"group field {field!r}: {len(values)} labels for {len(problems)} problems")
        rows: dict[str, list[int]] = {}
        for i, value in enumerate(values):
            if value is not None:
                rows.setdefault(str(value), []).append(i)
        out[field] = []
        for value in sorted(rows, key=_natural):
            mean, lo, hi = bootstrap_ci(table[rows[value]][:, cols], seed=seed, n_boot=n_boot)
            metrics = {
                n: {"value": float(mean[j]), "lo": float(lo[j]), "hi": float(hi[j])}
                for j, n in enumerate(shown)
            }
            out[field].append({"value": value, "n_problems": len(rows[value]), "metrics": metrics})
    return out


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def score_records(
    records: Sequence[dict],
    ks: Sequence[int],
    seed: int = 0,
    n_boot: int = 1000,
    variant: str | None = None,
    group_by: Sequence[str] | None = None,
    verifier: str | None = None,
) -> tuple[list[tuple[str | None, dict]], list[str]]:
    """Summaries of graded records, one per variant (`variant` picks one), and the graders that graded them.

    `group_by` names record fields to break the metrics down by (`breakdown`, under the summary's
    "groups"); None takes MATH's subject and level (`records.GROUP_FIELDS`) when every record has them.
    Scores come from one verifier (`records.choose_scores`: `verifier` names it); their vote transform is
    the one the records name, else `DEFAULT_VOTE_TRANSFORM`. A summary whose samples carry scores says
    whose under "verifier" ({"id", "vote_transform", "scored", "samples"}); best@k and wmaj@k need every
    sample scored."""
    groups = by_variant(records)
    if variant is not None:
        if variant not in groups:
            raise MetricError(
                f"--variant {variant!r} is not in the file; it holds {', '.join(map(str, groups)) or 'none'}"
            )
        groups = {variant: groups[variant]}
    chosen = [r for recs in groups.values() for r in recs]
    chosen, verifier_id, transform = choose_scores(chosen, verifier, "the graded records")
    groups = by_variant(chosen)
    graders = sorted({str(r.get("grader")) for r in records if r.get("grader")})
    fields = _group_fields(records, group_by)
    summaries = []
    for name, recs in groups.items():
        where = f"variant {name!r}" if name is not None else "graded records"
        problems = to_problem_samples(recs, where)
        summary = summarize(
            problems, ks, seed=seed, n_boot=n_boot, vote_transform=transform or DEFAULT_VOTE_TRANSFORM
        )
        scored = sum(r.get("score") is not None for r in recs)
        if scored:
            summary["verifier"] = {"id": verifier_id, "vote_transform": transform or DEFAULT_VOTE_TRANSFORM,
                                   "scored": scored, "samples": len(recs)}  # fmt: skip
        if fields:
            first = {}
            for r in recs:
                first.setdefault(r["problem_id"], r)
            labels = {f: [group_value(first[p.problem_id], f) for p in problems] for f in fields}
            summary["groups"] = breakdown(problems, labels, ks, seed=seed, n_boot=n_boot)
        summaries.append((name, summary))
    return summaries, graders


def _group_fields(records: Sequence[dict], group_by: Sequence[str] | None) -> list[str]:
    if group_by is None:
        return [f for f in GROUP_FIELDS if all(group_value(r, f) is not None for r in records)]
    missing = [f for f in group_by if not any(group_value(r, f) is not None for r in records)]
    if missing:
        have = sorted({k for r in records[:100] for k in r})
        raise MetricError(
            f"--group-by {', '.join(missing)}: no record has that field; records have {', '.join(have)}"
        )
    return list(group_by)


def length_ratio(
    problems: Sequence[ProblemSamples], reference: Sequence[ProblemSamples], seed: int = 0, n_boot: int = 1000
) -> dict | None:
    """Mean tokens per sample of `problems` over those of `reference` (the same problems, in the same
    order), {"value", "lo", "hi"} with a paired 95% bootstrap interval over problems: each resample takes
    the same problems for both, and the ratio of the resampled sample means. None when either lacks
    token counts or the reference never generated a token."""
    if len(problems) != len(reference) or not problems:
        raise MetricError(f"length ratio needs the same problems: {len(problems)} against {len(reference)}")
    if any(p.n_tokens is None for p in (*problems, *reference)):
        return None
    cols = np.array([[p.n_tokens.sum(), p.n, r.n_tokens.sum(), r.n] for p, r in zip(problems, reference, strict=True)],
                    dtype=np.float64)  # fmt: skip
    if cols[:, 2].sum() == 0:
        return None
    check_n_boot(n_boot)
    ratios = np.empty(n_boot)
    for rows, counts in resample_blocks(len(cols), seed, n_boot):
        sums = counts @ cols
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[rows] = (sums[:, 0] / sums[:, 1]) / (sums[:, 2] / sums[:, 3])
    lo, hi = (
        _percentiles(ratios[np.isfinite(ratios)][:, None], 0.95)
        if np.isfinite(ratios).any()
        else ([np.nan], [np.nan])
    )
    value = (cols[:, 0].sum() / cols[:, 1].sum()) / (cols[:, 2].sum() / cols[:, 3].sum())
    return {"value": float(value), "lo": float(lo[0]), "hi": float(hi[0])}
