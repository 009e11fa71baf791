"""The per-problem estimators (DESIGN §4): Pass@k, maj@k (exact counting, or a fixed-seed Monte Carlo
beyond MAJ_EXACT_MAX_N samples) and best@k; see the package docstring for why they look as they do."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from wiseft.errors import MetricError

# Exact maj@k counting runs in float64; C(n, k) stays finite for every k up to this n.
MAJ_EXACT_MAX_N = 1000
MAJ_MC_SUBSETS = 2000


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
