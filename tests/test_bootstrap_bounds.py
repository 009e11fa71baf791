"""The bootstrap is bounded (n_boot ≤ MAX_N_BOOT, resample matrix built in blocks of bounded size) and
gives the same bits as the one-shot computation it replaced (written out plainly below)."""

import json

import numpy as np
import pytest

from wiseft.cli import main
from wiseft.errors import MetricError
from wiseft.metrics import MAX_N_BOOT, bias_variance, bootstrap_ci, check_n_boot
from wiseft.metrics import intervals as metrics


def reference_ci(values: np.ndarray, seed: int, n_boot: int, level: float = 0.95):
    """The previous implementation: the whole n_boot × P multinomial count matrix, one product."""
    v = values if values.ndim == 2 else values[:, None]
    p = v.shape[0]
    counts = np.random.default_rng(seed).multinomial(p, np.full(p, 1.0 / p), size=n_boot).astype(np.float64)
    boots = counts @ v / p
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return v.mean(axis=0), lo, hi


def reference_bias_variance_ci(rho: np.ndarray, seed: int, n_boot: int):
    p = rho.shape[0]
    counts = np.random.default_rng(seed).multinomial(p, np.full(p, 1.0 / p), size=n_boot).astype(np.float64)
    weights = counts / p
    mean = weights @ rho
    var = np.maximum(weights @ (rho * rho) - mean**2, 0.0)
    alpha = (1.0 - 0.95) / 2.0
    lo, hi = np.quantile(np.stack([mean, (1.0 - mean) ** 2, var], axis=1), [alpha, 1.0 - alpha], axis=0)
    return lo, hi


SIZES = [(1, 1, 1000), (7, 3, 1000), (200, 12, 1000), (500, 30, 200), (5000, 4, 1000)]  # (P, M, n_boot)


@pytest.mark.parametrize("p,m,n_boot", SIZES)
def test_same_bits_as_the_one_shot_bootstrap(p, m, n_boot):
    values = np.random.default_rng(p).random((p, m))
    for got, want in zip(
        bootstrap_ci(values, seed=11, n_boot=n_boot), reference_ci(values, 11, n_boot), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    rho = values[:, 0]
    bv = bias_variance(rho, [2], seed=11, n_boot=n_boot)["ci"]
    lo, hi = reference_bias_variance_ci(rho, 11, n_boot)
    assert [bv[k] for k in ("mean_rho", "bias2", "var")] == [[lo[i], hi[i]] for i in range(3)]


@pytest.mark.parametrize("block_bytes", [8, 8 * 7 * 3, 8 * 7 * 64])  # one row, three rows, 64 rows per block
def test_blocks_do_not_change_the_resamples(monkeypatch, block_bytes):
    values = np.random.default_rng(0).random((7, 5))
    whole = bootstrap_ci(values, seed=4, n_boot=300)
    monkeypatch.setattr(metrics, "BOOT_CHUNK_BYTES", block_bytes)
    rows = [r.stop - r.start for r, _ in metrics.resample_blocks(7, 4, 300)]
    assert max(rows) == max(1, block_bytes // (8 * 7)) and sum(rows) == 300
    np.testing.assert_array_equal(metrics.resample_weights(7, 4, 300), reference_counts(7, 4, 300))
    for got, want in zip(bootstrap_ci(values, seed=4, n_boot=300), whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)  # equal bits here; BLAS may vary


def reference_counts(p: int, seed: int, n_boot: int) -> np.ndarray:
    return np.random.default_rng(seed).multinomial(p, np.full(p, 1.0 / p), size=n_boot).astype(np.float64)


BAD_N_BOOT = [
    (0, "at least 1"),
    (-5, "at least 1"),
    (10**9, f"the limit is {MAX_N_BOOT}"),
    (MAX_N_BOOT + 1, f"the limit is {MAX_N_BOOT}"),
    (2.5, "whole number"),
    (True, "whole number"),
]


@pytest.mark.parametrize("n_boot,fragment", BAD_N_BOOT)
def test_n_boot_is_bounded(n_boot, fragment):
    with pytest.raises(MetricError) as info:
        check_n_boot(n_boot)
    assert "\n" not in str(info.value) and "--n-boot" in str(info.value) and fragment in str(info.value)
    with pytest.raises(MetricError, match=fragment):
        bootstrap_ci(np.ones(3), n_boot=n_boot)


def test_the_limit_itself_runs():
    assert check_n_boot(MAX_N_BOOT) == MAX_N_BOOT
    mean, lo, hi = bootstrap_ci(np.array([0.0, 1.0, 1.0]), seed=0, n_boot=MAX_N_BOOT)
    assert lo <= mean <= hi


def test_score_refuses_a_huge_n_boot_and_writes_nothing(tmp_path, capsys):
    graded = tmp_path / "g.jsonl"
    rec = {"problem_id": "0", "sample_idx": 0, "completion": "1", "verdict": "correct", "correct": True,
           "answer_class": 0}  # fmt: skip
    graded.write_text(json.dumps(rec) + "\n")
    capsys.readouterr()
    assert main(["score", str(graded), "--k", "1", "--n-boot", "1000000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--n-boot is 1000000000; the limit is 100000" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.jsonl"]


def test_the_one_block_resample_matrix_is_drawn_once_and_kept_read_only(monkeypatch):
    """A summary asks for the same resamples many times: the matrix is kept by (p, seed, n_boot), equal
    to the one drawn afresh, and read-only, so no caller can change the resamples of the next."""
    monkeypatch.setattr(metrics, "_resamples", type(metrics._resamples)())
    draws = []
    real = metrics._draw_blocks
    monkeypatch.setattr(metrics, "_draw_blocks", lambda *a: draws.append(a) or real(*a))
    first = [c for _, c in metrics.resample_blocks(9, 5, 200)]
    again = [c for _, c in metrics.resample_blocks(9, 5, 200)]
    assert len(first) == 1 and again[0] is first[0] and len(draws) == 1
    np.testing.assert_array_equal(first[0], reference_counts(9, 5, 200))
    assert not first[0].flags.writeable
    with pytest.raises(ValueError):
        first[0][0, 0] = 1.0
    for seed in range(metrics.RESAMPLE_CACHE + 1):  # the oldest falls out; each key is drawn once
        next(metrics.resample_blocks(9, 100 + seed, 200))
    assert len(metrics._resamples) == metrics.RESAMPLE_CACHE and (9, 5, 200) not in metrics._resamples
    np.testing.assert_array_equal(metrics.resample_weights(9, 5, 200), reference_counts(9, 5, 200))
