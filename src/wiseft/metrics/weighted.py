"""Weighted majority vote (wmaj@k): votes are verifier scores mapped to weights by a named transform;
k-subsets enumerated up to WMAJ_EXACT_MAX_SUBSETS, else a fixed-seed Monte Carlo."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np

from wiseft.errors import MetricError
from wiseft.metrics.estimators import (
    MAJ_MC_SUBSETS,
    _check_k,
)

# Weighted maj@k enumerates every k-subset up to this many (C(32, 2) = 496, C(16, 4) = 1820, C(20, 4) = 4845).
WMAJ_EXACT_MAX_SUBSETS = 10_000
# Group votes within this relative distance of the top vote tie: float sums of the same weights in a
# different order may differ in the last bits, and such groups must share the credit (1/m).
WMAJ_TIE_RTOL = 1e-12


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
