"""Bootstrap intervals over problems (one fixed-seed resample matrix, drawn in bounded blocks) and the
bias–variance decomposition of per-problem Pass@1 with its intervals."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from wiseft.errors import MetricError
from wiseft.limits import check_n_boot

# Fixed edges for the histogram of per-problem Pass@1 (ρ): ten bins of width 0.1, the last one closed.
RHO_EDGES = tuple(float(x) for x in np.linspace(0.0, 1.0, 11))
BOOT_CHUNK_BYTES = 64 * 1024**2  # one block of the resample matrix (float64; the int64 draws as much again)
# Resample matrices that fit in one block, kept read-only by (p, seed, n_boot): one summary asks for the
# same matrix about ten times (each metric's interval, bias-variance, diversity) and a run asks for it once
# per variant; drawing it costs ~20 ms at 600 problems × 1,000 resamples, using it ~1 ms.
RESAMPLE_CACHE = 4
_resamples: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()


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
    for rows, counts in resample_blocks(p, seed, n_boot):
        boots[rows] = counts @ v / p
    lo, hi = _percentiles(boots, level)
    mean = v.mean(axis=0)
    if one_d:
        return mean[0], lo[0], hi[0]
    return mean, lo, hi


def resample_blocks(p: int, seed: int, n_boot: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, counts) blocks of the n_boot × p multinomial resample matrix, in order, each at most
    BOOT_CHUNK_BYTES as float64. Consecutive draws of one generator: the matrix does not depend on the
    block size, and the same (p, seed, n_boot) gives the same resamples, so every interval of one
    summary is paired."""
    step = max(1, BOOT_CHUNK_BYTES // (8 * p))
    if step >= n_boot and isinstance(seed, int):  # one block: drawn once, then reused (read-only)
        yield slice(0, n_boot), _whole_matrix(p, seed, n_boot)
        return
    yield from _draw_blocks(p, seed, n_boot, step)


def _draw_blocks(p: int, seed: int, n_boot: int, step: int) -> Iterator[tuple[slice, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pvals = np.full(p, 1.0 / p)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        yield slice(start, stop), rng.multinomial(p, pvals, size=stop - start).astype(np.float64)


def _whole_matrix(p: int, seed: int, n_boot: int) -> np.ndarray:
    """The n_boot × p resample matrix from the cache, else drawn (the same draws as block by block)."""
    key = (p, seed, n_boot)
    if key in _resamples:
        _resamples.move_to_end(key)
        return _resamples[key]
    ((_, counts),) = _draw_blocks(p, seed, n_boot, n_boot)
    counts.flags.writeable = False
    _resamples[key] = counts
    while len(_resamples) > RESAMPLE_CACHE:
        _resamples.popitem(last=False)
    return counts


def resample_weights(p: int, seed: int, n_boot: int) -> np.ndarray:
    """The whole n_boot × p resample matrix at once (for tests and small sizes)."""
    return np.concatenate([counts for _, counts in resample_blocks(p, seed, n_boot)])


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
    for rows, counts in resample_blocks(rho.shape[0], seed, n_boot):
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
