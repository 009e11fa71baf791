"""Metrics over graded samples, exactly as DESIGN §4 defines them. Pure functions, no I/O.

Input is one `ProblemSamples` per problem: per-sample correctness, the answer equivalence class of each
sample (−1 when no answer was extracted), and optionally reward-model scores, token counts and whether the
length limit cut the sample. `summarize` turns a list of them into the dictionary every consumer (CLI,
sweep, report) reads; its shape is fixed in docs/ARCHITECTURE.md.

Why the estimators look the way they do:
- Pass@k uses the product form of 1 − C(n−c, k)/C(n, k): no huge binomials, no cancellation.
- maj@k is an expectation over all k-subsets. Enumerating them is hopeless for n = 64, so it is counted:
  for the correct class at count j, a small dynamic programme over the other classes counts the subsets
  in which no class exceeds j and t classes tie at j (credit 1/(t+1)). Exact in float64 up to n = 1000;
  beyond that (binomials overflow) a fixed-seed Monte Carlo over subsets is used.
- best@k is the closed form of Σ_i correct_(i)·C(n−i, k−1)/C(n, k) over samples sorted by score; tied
  scores get their group's mean correctness, which is the exact expectation over random tie-breaking.
- weighted maj@k (wmaj@k) has no counting shortcut (votes are sums of real weights), so the k-subsets
  are enumerated when there are at most WMAJ_EXACT_MAX_SUBSETS of them, else a fixed-seed Monte Carlo
  over MAJ_MC_SUBSETS subsets is used. Votes are the raw scores mapped to weights ≥ 0 by a named
  transform (VOTE_TRANSFORMS): each verifier documents its own (wiseft.verify).
- Intervals: one bootstrap over problems (a fixed-seed multinomial resample matrix) shared by all
  metrics, so a whole summary costs one small matrix product. `n_boot` is at most `MAX_N_BOOT`, and the
  n_boot × problems resample matrix is drawn and multiplied in row blocks of at most `BOOT_CHUNK_BYTES`,
  so memory stays bounded (the bootstrap means themselves take n_boot × metrics × 8 bytes). Blocks are
  consecutive draws of one generator, so the resamples do not depend on the block size, and at the
  default n_boot = 1000 the whole matrix is one block up to 8,388 problems.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Iterator, Sequence

import numpy as np

from wiseft.errors import MetricError
from wiseft.records import (
    GROUP_FIELDS,
    ProblemSamples,
    by_variant,
    choose_scores,
    group_value,
    to_problem_samples,
)

# Fixed edges for the histogram of per-problem Pass@1 (ρ): ten bins of width 0.1, the last one closed.
RHO_EDGES = tuple(float(x) for x in np.linspace(0.0, 1.0, 11))
# Exact maj@k counting runs in float64; C(n, k) stays finite for every k up to this n.
MAJ_EXACT_MAX_N = 1000
MAJ_MC_SUBSETS = 2000
MAX_N_BOOT = 100_000  # bootstrap resamples; 1,000 give intervals to about ±0.5 percentage point
BOOT_CHUNK_BYTES = 64 * 1024**2  # one block of the resample matrix (float64; the int64 draws as much again)
# Weighted maj@k enumerates every k-subset up to this many (C(32, 2) = 496, C(16, 4) = 1820, C(20, 4) = 4845).
WMAJ_EXACT_MAX_SUBSETS = 10_000
# Group votes within this relative distance of the top vote tie: float sums of the same weights in a
# different order may differ in the last bits, and such groups must share the credit (1/m).
WMAJ_TIE_RTOL = 1e-12


def _check_k(n: int, k: int, where: str = "") -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise MetricError(f"k must be a positive integer, got {k!r}")
    if k > n:
        raise MetricError(
            f"k={k} is larger than n={n} samples{where}; ask only for k ≤ n (or sample more with a larger --n)"
        )


# ----------------------------------------------------------------------------------------------- Pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k of one problem: 1 − C(n−c, k)/C(n, k), in the stable product form."""
    _check_k(n, k)
    if not 0 <= c <= n:
        raise MetricError(f"number correct c={c} must lie between 0 and n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


# ------------------------------------------------------------------------------------------------ maj@k


def _class_counts(classes: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sizes of the answer classes, whether each class is correct, and the number of unparseable samples."""
    valid = classes >= 0
    labels, inverse = np.unique(classes[valid], return_inverse=True)
    counts = np.bincount(inverse, minlength=labels.shape[0])
    is_correct = np.zeros(labels.shape[0], dtype=bool)
    np.logical_or.at(is_correct, inverse, correct[valid])
    return counts, is_correct, int((~valid).sum())


def maj_at_k(
    classes: Sequence[int] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    k: int,
    *,
    method: str = "auto",
    seed: int = 0,
    n_subsets: int = MAJ_MC_SUBSETS,
) -> float:
    """Expected majority-vote accuracy of one problem over k-subsets drawn without replacement.

    Samples with class −1 (no answer) never vote. A class counts as correct when any of its samples is.
    When m classes tie for the most votes, the subset earns (correct classes among them)/m. `method` is
    "exact" (counting), "mc" (fixed-seed Monte Carlo over `n_subsets` subsets) or "auto" (exact for
    n ≤ 1000).
    """
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    n = classes.shape[0]
    if correct.shape[0] != n:
        raise MetricError(f"maj@k: {n} classes but {correct.shape[0]} correctness flags")
    _check_k(n, k)
    if method == "auto":
        method = "exact" if n <= MAJ_EXACT_MAX_N else "mc"
    counts, is_correct, unparsed = _class_counts(classes, correct)
    if not is_correct.any():
        return 0.0
    if method == "exact":
        if n > MAJ_EXACT_MAX_N:
            raise MetricError(f"exact maj@k counts in float64 and supports n ≤ {MAJ_EXACT_MAX_N}, got n={n}")
        return _maj_exact(counts, is_correct, unparsed, [k])[0]
    if method == "mc":
        return _maj_monte_carlo(classes, correct, k, seed, n_subsets)
    raise MetricError(f"maj@k method must be 'auto', 'exact' or 'mc', got {method!r}")


def _pattern(counts: np.ndarray, is_correct: np.ndarray) -> tuple:
    """The class sizes and correctness, sorted: maj@k depends on nothing else (not on class labels)."""
    return tuple(sorted(zip(counts.tolist(), is_correct.tolist(), strict=True)))


@functools.lru_cache(maxsize=65536)
def _maj_exact_memo(pattern: tuple, unparsed: int, ks: tuple[int, ...]) -> list[float]:
    """`_maj_exact` cached by pattern: collapsed models repeat the same few patterns across problems."""
    counts = np.array([c for c, _ in pattern], dtype=np.int64)
    is_correct = np.array([ok for _, ok in pattern], dtype=bool)
    return _maj_exact(counts, is_correct, unparsed, ks)


def _maj_exact(counts: np.ndarray, is_correct: np.ndarray, unparsed: int, ks: Sequence[int]) -> list[float]:
    """Exact maj@k of one problem for every k in `ks`, by counting subsets (see the module docstring).

    For the correct class with a samples drawing j of them, the other classes must each draw at most j;
    the subset earns 1/(1+t) when t of them draw exactly j. One dynamic programme per j serves every k.
    """
    n = int(counts.sum()) + unparsed
    ks_arr = np.asarray(ks, dtype=np.int64)
    k_max = int(ks_arr.max())
    totals = np.zeros(len(ks))
    for ci in np.flatnonzero(is_correct):
        a = int(counts[ci])
        others = [int(b) for i, b in enumerate(counts) if i != ci]
        biggest = max(others, default=0)
        for j in range(1, min(a, k_max) + 1):
            if j > biggest:
                # No other class can reach j votes: every completion of the subset wins outright.
                rest_pool = n - a
                for col, k in enumerate(ks):
                    if 0 <= k - j <= rest_pool:
                        totals[col] += float(math.comb(a, j)) * float(math.comb(rest_pool, k - j))
                continue
            ways, free = _votes_below(others, unparsed, j, k_max - j)
            by_size = ways @ (1.0 / np.arange(1, ways.shape[1] + 1))  # credit-weighted, by subset size s
            # The free pool fills the other k − j − s slots: C(free, k − j − s) ways (0 when impossible).
            fill_count = (ks_arr - j)[:, None] - np.arange(k_max - j + 1)[None, :]
            fillable = (fill_count >= 0) & (fill_count <= free)
            fill = np.where(fillable, _binomials(free)[np.minimum(np.maximum(fill_count, 0), free)], 0.0)
            totals += float(math.comb(a, j)) * (fill @ by_size)
    return [float(t) / float(math.comb(n, k)) for t, k in zip(totals, ks, strict=True)]


def _votes_below(others: list[int], unparsed: int, j: int, rest: int) -> tuple[np.ndarray, int]:
    """ways[s, t]: subsets of s samples from the classes of size ≥ j in which each draws at most j and t
    draw exactly j; and the size of the free pool.

    Classes with fewer than j samples can never reach j, so they join the unparseable samples in one free
    pool that is filled by a single binomial; only classes of size ≥ j go through the programme.
    """
    contenders = [b for b in others if b >= j]
    free = unparsed + sum(b for b in others if b < j)
    max_ties = min(len(contenders), rest // j)
    ways = np.zeros((rest + 1, max_ties + 1))
    ways[0, 0] = 1.0
    for b in contenders:
        binom = _binomials(b)
        new = ways.copy()  # i = 0
        for i in range(1, min(j, rest) + 1):
            if i < j:
                new[i:, :] += binom[i] * ways[: rest + 1 - i, :]
            elif max_ties > 0:
                new[i:, 1:] += binom[i] * ways[: rest + 1 - i, :-1]
        ways = new
    return ways, free


@functools.lru_cache(maxsize=4096)
def _binomials(b: int) -> np.ndarray:
    """C(b, i) for i = 0..b as float64 (read-only: shared by every caller)."""
    out = np.array([float(math.comb(b, i)) for i in range(b + 1)])
    out.setflags(write=False)
    return out


def _maj_monte_carlo(classes: np.ndarray, correct: np.ndarray, k: int, seed: int, n_subsets: int) -> float:
    if n_subsets < 1000:
        raise MetricError(f"maj@k Monte Carlo needs at least 1000 subsets, got {n_subsets}")
    n = classes.shape[0]
    rng = np.random.default_rng(seed)
    labels, inverse = np.unique(classes, return_inverse=True)
    class_correct = np.zeros(labels.shape[0], dtype=bool)
    np.logical_or.at(class_correct, inverse, correct)
    voting = labels >= 0
    picks = np.argsort(rng.random((n_subsets, n)), axis=1)[:, :k]
    votes = np.zeros((n_subsets, labels.shape[0]), dtype=np.int64)
    np.add.at(votes, (np.arange(n_subsets)[:, None], inverse[picks]), 1)
    votes[:, ~voting] = 0
    top = votes.max(axis=1, keepdims=True)
    tied = (votes == top) & (top > 0)
    m = tied.sum(axis=1)
    hits = (tied & class_correct[None, :]).sum(axis=1)
    return float(np.mean(np.where(m > 0, hits / np.maximum(m, 1), 0.0)))


# ----------------------------------------------------------------------------------------------- best@k


def best_at_k(scores: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, k: int) -> float:
    """Expected correctness of the top-scored sample among k drawn without replacement (ties averaged)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    n = scores.shape[0]
    if correct.shape[0] != n:
        raise MetricError(f"best@k: {n} scores but {correct.shape[0]} correctness flags")
    if not np.all(np.isfinite(scores)):
        raise MetricError("best@k: scores must be finite numbers (found NaN/inf)")
    _check_k(n, k)
    order = np.argsort(-scores, kind="stable")
    s, c = scores[order], correct[order]
    # Replace each sample's correctness by the mean over its group of equal scores.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, n])
    c = np.repeat(np.add.reduceat(c, starts) / sizes, sizes)
    return float(c @ _best_weights(n, k))


def _best_weights(n: int, k: int) -> np.ndarray:
    """w_i = C(n−i, k−1)/C(n, k) for i = 1..n, by the ratio w_{i+1}/w_i = (n−i−k+1)/(n−i)."""
    i = np.arange(1, n, dtype=np.float64)
    ratios = np.clip((n - i - k + 1) / (n - i), 0.0, None)
    return (k / n) * np.concatenate(([1.0], np.cumprod(ratios)))


# ------------------------------------------------------------------------------------- weighted maj@k


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1/(1 + e^−x) without overflow for either sign."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# Scores → vote weights ≥ 0. Each verifier names its own (wiseft.verify): a probability is used as is, a
# logit becomes the probability it stands for, a mean log-probability the geometric-mean token probability.
VOTE_TRANSFORMS = {"identity": lambda s: s, "sigmoid": _sigmoid, "exp": np.exp}
# For scores of unknown origin (a `score` field in JSONL): the sigmoid maps any real score to a vote in
# (0, 1) and keeps probabilities' order; a verifier's own transform should be passed when it is known.
DEFAULT_VOTE_TRANSFORM = "sigmoid"


def vote_weights(scores: Sequence[float] | np.ndarray, transform: str = "identity") -> np.ndarray:
    """The vote weight of each sample: `VOTE_TRANSFORMS[transform](score)`, checked finite and ≥ 0."""
    if transform not in VOTE_TRANSFORMS:
        raise MetricError(
            f"unknown vote transform {transform!r}; choose one of {', '.join(sorted(VOTE_TRANSFORMS))}"
        )
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(s)):
        raise MetricError("weighted maj@k: scores must be finite numbers (found NaN/inf)")
    weights = VOTE_TRANSFORMS[transform](s)
    if np.any(weights < 0):
        raise MetricError(
            f"weighted maj@k: transform {transform!r} leaves negative votes (lowest score {s.min():g}); "
            "name the verifier's transform ('sigmoid' for logits, 'exp' for log-probabilities)"
        )
    return weights


def weighted_maj_at_k(
    classes: Sequence[int] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    k: int,
    *,
    transform: str = "identity",
    method: str = "auto",
    seed: int = 0,
    n_subsets: int = MAJ_MC_SUBSETS,
) -> float:
    """Expected weighted-majority accuracy of one problem over k-subsets drawn without replacement.

    In each subset an answer class's vote is the sum of its samples' weights (`vote_weights(scores,
    transform)`); samples with class −1 never vote. The classes present in the subset compete; when m
    tie for the top vote (within WMAJ_TIE_RTOL) the subset earns (correct classes among them)/m. `method`
    is "exact" (every subset; at most WMAJ_EXACT_MAX_SUBSETS), "mc" (fixed-seed Monte Carlo over
    `n_subsets` ≥ 1000 subsets) or "auto" (exact when C(n, k) ≤ WMAJ_EXACT_MAX_SUBSETS).
    """
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    weights = vote_weights(scores, transform)
    n = classes.shape[0]
    if correct.shape[0] != n or weights.shape[0] != n:
        raise MetricError(
            f"weighted maj@k: {n} classes, {correct.shape[0]} correctness flags and {weights.shape[0]} scores"
        )
    _check_k(n, k)
    if method not in ("auto", "exact", "mc"):
        raise MetricError(f"weighted maj@k method must be 'auto', 'exact' or 'mc', got {method!r}")
    if method == "exact" and math.comb(n, k) > WMAJ_EXACT_MAX_SUBSETS:
        raise MetricError(
            f"exact weighted maj@k enumerates at most {WMAJ_EXACT_MAX_SUBSETS} subsets, "
            f"but C({n}, {k}) = {math.comb(n, k)}; use method 'mc' or 'auto'"
        )
    if method == "mc" and n_subsets < 1000:
        raise MetricError(f"weighted maj@k Monte Carlo needs at least 1000 subsets, got {n_subsets}")
    group, good = _groups(classes, correct)
    return _wmaj(group, weights, good, k, method, seed, n_subsets)


def _groups(classes: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's group 0..G−1 (G for no answer) and whether each group is correct."""
    valid = classes >= 0
    labels, inverse = np.unique(classes[valid], return_inverse=True)
    group = np.full(classes.shape[0], labels.shape[0], dtype=np.int64)
    group[valid] = inverse
    good = np.zeros(labels.shape[0], dtype=bool)
    np.logical_or.at(good, inverse, correct[valid])
    return group, good


def _wmaj(
    group: np.ndarray, weights: np.ndarray, good: np.ndarray, k: int, method: str, seed: int, n_subsets: int
) -> float:
    if not good.any():
        return 0.0
    n = group.shape[0]
    if method == "exact" or (method == "auto" and math.comb(n, k) <= WMAJ_EXACT_MAX_SUBSETS):
        subsets = _all_subsets(n, k)
    else:
        subsets = _random_subsets(n, k, seed, n_subsets)
    return _wmaj_credit(group, weights, good, subsets)


@functools.lru_cache(maxsize=256)
def _all_subsets(n: int, k: int) -> np.ndarray:
    """Every k-subset of range(n), one per row (read-only: shared by every caller)."""
    count = math.comb(n, k)
    flat = itertools.chain.from_iterable(itertools.combinations(range(n), k))
    out = np.fromiter(flat, dtype=np.int64, count=count * k).reshape(count, k)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=256)
def _random_subsets(n: int, k: int, seed: int, n_subsets: int) -> np.ndarray:
    """`n_subsets` uniform k-subsets of range(n), drawn as maj@k's Monte Carlo draws them."""
    rng = np.random.default_rng(seed)
    out = np.ascontiguousarray(np.argsort(rng.random((n_subsets, n)), axis=1)[:, :k])
    out.setflags(write=False)
    return out


def _wmaj_credit(group: np.ndarray, weights: np.ndarray, good: np.ndarray, subsets: np.ndarray) -> float:
    """Mean credit of the subsets (rows of sample indices) under the weighted vote.

    Votes are laid out group-major (groups × subsets) so that every reduction runs across groups over
    contiguous rows (numpy reduces a short last axis slowly).
    """
    m = subsets.shape[0]
    n_groups = good.shape[0]
    rows = n_groups + 1  # the last row collects the samples with no answer, which never vote
    flat = (group[subsets] * m + np.arange(m)[:, None]).ravel()
    votes = np.bincount(flat, weights=weights[subsets].ravel(), minlength=m * rows).reshape(rows, m)
    present = np.bincount(flat, minlength=m * rows).reshape(rows, m)[:n_groups] > 0
    votes = np.where(present, votes[:n_groups], -np.inf)
    top = votes.max(axis=0)
    with np.errstate(invalid="ignore"):
        tied = present & (votes >= top - WMAJ_TIE_RTOL * np.abs(top))
    m_tied = tied.sum(axis=0)
    hits = tied[good].sum(axis=0)
    return float(np.mean(np.where(m_tied > 0, hits / np.maximum(m_tied, 1), 0.0)))


# -------------------------------------------------------------------------------------------- summaries


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means and percentile intervals of per-problem values (shape P or P×M) under a bootstrap over problems.

    Every column shares the same resamples (drawn once as multinomial counts), so intervals of metrics
    computed from one summary are paired. Returns (mean, lo, hi), each of shape M (or scalars for 1-D).
    """
    v = np.asarray(values, dtype=np.float64)
    one_d = v.ndim == 1
    if one_d:
        v = v[:, None]
    p = v.shape[0]
    if p == 0:
        raise MetricError("bootstrap over problems needs at least one problem")
    check_n_boot(n_boot)
    boots = np.empty((n_boot, v.shape[1]))
    for rows, counts in _resample_blocks(p, seed, n_boot):
        boots[rows] = counts @ v / p
    lo, hi = _percentiles(boots, level)
    mean = v.mean(axis=0)
    if one_d:
        return mean[0], lo[0], hi[0]
    return mean, lo, hi


def check_n_boot(n_boot, flag: str = "--n-boot") -> int:
    """`n_boot` as a number of bootstrap resamples in [1, MAX_N_BOOT]; MetricError naming `flag` else."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)):
        raise MetricError(f"{flag} must be a whole number of resamples, got {n_boot!r}")
    if n_boot < 1:
        raise MetricError(f"n_boot must be at least 1, got {n_boot} ({flag})")
    if n_boot > MAX_N_BOOT:
        raise MetricError(f"{flag} is {n_boot}; the limit is {MAX_N_BOOT} bootstrap resamples")
    return int(n_boot)


def _resample_blocks(p: int, seed: int, n_boot: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, counts) blocks of the n_boot × p multinomial resample matrix, in order, each at most
    BOOT_CHUNK_BYTES as float64. Consecutive draws of one generator: the matrix does not depend on the
    block size, and the same (p, seed, n_boot) gives the same resamples, so every interval of one
    summary is paired."""
    rng = np.random.default_rng(seed)
    pvals = np.full(p, 1.0 / p)
    step = max(1, BOOT_CHUNK_BYTES // (8 * p))
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        yield slice(start, stop), rng.multinomial(p, pvals, size=stop - start).astype(np.float64)


def _resample_weights(p: int, seed: int, n_boot: int) -> np.ndarray:
    """The whole n_boot × p resample matrix at once (for tests and small sizes)."""
    return np.concatenate([counts for _, counts in _resample_blocks(p, seed, n_boot)])


def _percentiles(boots: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def bias_variance_boot(rho: np.ndarray, seed: int = 0, n_boot: int = 1000) -> np.ndarray:
    """n_boot × 3 bootstrap replicates of (E[ρ], bias², Var[ρ]) over problems.

    `rho` is P (one variant) or P×V (V variants on the same problems: n_boot × 3 × V). The resamples are
    those of `bootstrap_ci` with this seed, shared by every column, so replicates of two variants are
    paired: their difference is the bootstrap of the difference of bias² (or Var), which are not
    per-problem means and cannot be bootstrapped as one paired series.
    """
    rho = np.asarray(rho, dtype=np.float64)
    columns = np.empty((check_n_boot(n_boot), 3, *rho.shape[1:]))
    for rows, counts in _resample_blocks(rho.shape[0], seed, n_boot):
        weights = counts / rho.shape[0]
        boot_mean = weights @ rho
        boot_var = np.maximum(weights @ (rho * rho) - boot_mean**2, 0.0)
        columns[rows] = np.stack([boot_mean, (1.0 - boot_mean) ** 2, boot_var], axis=1)
    return columns


def bias_variance(
    rho: np.ndarray,
    ks: Sequence[int],
    pass_k: dict[int, float] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict:
    """E[ρ], bias² = (1−E[ρ])², Var[ρ] (over problems) and the Jensen bound (bias²+Var)^{k/2} per k.

    The bound is a lower bound on E[(1−ρ)^k] (reported as `one_minus_pass_plugin`) for k ≥ 2, and an
    equality at k = 2. `one_minus_pass` is 1 − the unbiased Pass@k when `pass_k` is given. `ci` holds
    95% bootstrap intervals over problems of E[ρ], bias² and Var[ρ] (the same resamples as
    `bootstrap_ci` with this seed).
    """
    rho = np.asarray(rho, dtype=np.float64)
    mean = float(rho.mean())
    bias2 = (1.0 - mean) ** 2
    var = float(rho.var())
    lo, hi = _percentiles(bias_variance_boot(rho, seed, n_boot), 0.95)
    out = {
        "mean_rho": mean,
        "bias2": bias2,
        "var": var,
        "ci": {name: [float(lo[i]), float(hi[i])] for i, name in enumerate(("mean_rho", "bias2", "var"))},
        "bound": {str(k): float((bias2 + var) ** (k / 2.0)) for k in ks},
        "one_minus_pass_plugin": {str(k): float(np.mean((1.0 - rho) ** k)) for k in ks},
    }
    if pass_k is not None:
        out["one_minus_pass"] = {str(k): 1.0 - float(pass_k[k]) for k in ks}
    return out


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


def summarize(
    problems: Sequence[ProblemSamples],
    ks: Sequence[int],
    seed: int = 0,
    n_boot: int = 1000,
    vote_transform: str = DEFAULT_VOTE_TRANSFORM,
) -> dict:
    """Every metric of DESIGN §4 with bootstrap 95% intervals, in the shape of docs/ARCHITECTURE.md.

    With scores, best@k and wmaj@k are included and the summary records the `vote_transform` that turned
    scores into votes (pass the verifier's own: `Verifier.identity["vote_transform"]`).
    """
    ks = _normalise_ks(ks)
    names, table = per_problem_values(problems, ks, seed=seed, vote_transform=vote_transform)
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
    for rows, counts in _resample_blocks(len(cols), seed, n_boot):
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
