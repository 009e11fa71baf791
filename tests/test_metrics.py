"""Metrics against independent references: big-integer binomials and brute-force subset enumeration."""

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from wiseft.errors import MetricError
from wiseft.metrics import (
    RHO_EDGES,
    ProblemSamples,
    best_at_k,
    bias_variance,
    bootstrap_ci,
    maj_at_k,
    pass_at_k,
    summarize,
)

# ----------------------------------------------------------------------------- references (brute force)


def ref_pass(n, c, k):
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def ref_maj(classes, correct, k):
    """Average over every k-subset of the tie-split majority credit (unparseable samples never vote)."""
    good = {cl for cl, ok in zip(classes, correct, strict=True) if ok}
    total, count = Fraction(0), 0
    for subset in itertools.combinations(range(len(classes)), k):
        count += 1
        votes = {}
        for i in subset:
            if classes[i] >= 0:
                votes[classes[i]] = votes.get(classes[i], 0) + 1
        if not votes:
            continue
        top = max(votes.values())
        tied = [cl for cl, v in votes.items() if v == top]
        total += Fraction(sum(cl in good for cl in tied), len(tied))
    return total / count


def ref_best(scores, correct, k):
    """Average over every k-subset of the mean correctness of its top-scored samples (random tie-break)."""
    total, count = Fraction(0), 0
    for subset in itertools.combinations(range(len(scores)), k):
        count += 1
        top = max(scores[i] for i in subset)
        winners = [i for i in subset if scores[i] == top]
        total += Fraction(sum(bool(correct[i]) for i in winners), len(winners))
    return total / count


# ------------------------------------------------------------------------------------------------ Pass@k


@pytest.mark.parametrize("seed", range(5))
def test_pass_at_k_matches_big_integer_comb(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        c = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, n + 1))
        assert pass_at_k(n, c, k) == pytest.approx(float(ref_pass(n, c, k)), abs=1e-12)


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (10, 0, 1, 0.0),  # nothing correct
        (10, 0, 10, 0.0),
        (10, 10, 1, 1.0),  # everything correct
        (10, 10, 10, 1.0),
        (10, 7, 4, 1.0),  # n − c < k: every subset holds a correct sample
        (10, 7, 3, 1 - 1 / 120),  # n − c = k: exactly one all-wrong subset
        (5, 1, 1, 0.2),
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
    ],
)
def test_pass_at_k_edge_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-15)


def test_pass_at_k_large_n_is_finite_and_stable():
    # C(10000, 5000) overflows float64; the product form does not.
    assert pass_at_k(10_000, 1, 5000) == pytest.approx(0.5, abs=1e-12)
    assert pass_at_k(10_000, 3, 1) == pytest.approx(3e-4, rel=1e-12)


@pytest.mark.parametrize(
    "args,match",
    [
        ((4, 1, 5), "k=5 is larger than n=4"),
        ((4, 1, 0), "positive integer"),
        ((4, 5, 1), "c=5 must lie between 0 and n=4"),
        ((4, -1, 1), "c=-1"),
    ],
)
def test_pass_at_k_rejects_bad_arguments(args, match):
    with pytest.raises(MetricError, match=match):
        pass_at_k(*args)


# ------------------------------------------------------------------------------------------------- maj@k


def random_problem(rng, n, n_classes, p_none=0.15):
    classes = rng.integers(0, n_classes, size=n)
    classes[rng.random(n) < p_none] = -1
    gold = int(rng.integers(0, n_classes + 1))  # sometimes no sample is correct at all
    return classes, classes == gold


@pytest.mark.parametrize("seed", range(4))
def test_maj_at_k_exact_matches_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(60):
        n = int(rng.integers(1, 11))
        classes, correct = random_problem(rng, n, int(rng.integers(1, 5)))
        for k in range(1, n + 1):
            assert maj_at_k(classes, correct, k) == pytest.approx(
                float(ref_maj(classes, correct, k)), abs=1e-12
            )


@pytest.mark.parametrize(
    "classes,correct,k,expected",
    [
        ([0, 1], [True, False], 2, Fraction(1, 2)),  # two-way tie with the gold among them: 1/2
        ([0, 1, 2], [True, False, False], 3, Fraction(1, 3)),  # three-way tie: 1/3
        ([0, 0, 1, 1], [True, True, False, False], 4, Fraction(1, 2)),
        ([0, -1, -1], [True, False, False], 3, Fraction(1)),  # unparseable answers do not vote
        ([-1, -1, -1], [False, False, False], 2, Fraction(0)),  # nobody votes: no credit
        ([1, 1, 0], [False, False, True], 3, Fraction(0)),  # the wrong answer wins outright
        ([0, 0, 0], [True, True, True], 2, Fraction(1)),
    ],
)
def test_maj_at_k_ties_and_dropped_answers(classes, correct, k, expected):
    assert ref_maj(classes, correct, k) == expected  # the reference itself, on cases worked by hand
    assert maj_at_k(classes, correct, k) == pytest.approx(float(expected), abs=1e-15)


def test_maj_at_k_two_correct_classes_counts_both():
    # A verifier that is not transitive can leave two correct classes; each earns its share of a tie.
    classes, correct = [0, 1, 2, 2], [True, True, False, False]
    for k in range(1, 5):
        assert maj_at_k(classes, correct, k) == pytest.approx(float(ref_maj(classes, correct, k)), abs=1e-12)


def test_maj_at_k_monte_carlo_is_close_and_seeded():
    rng = np.random.default_rng(7)
    classes, correct = random_problem(rng, 12, 3, p_none=0.1)
    exact = maj_at_k(classes, correct, 5, method="exact")
    mc = maj_at_k(classes, correct, 5, method="mc", seed=3, n_subsets=4000)
    assert mc == pytest.approx(exact, abs=0.03)
    assert mc == maj_at_k(classes, correct, 5, method="mc", seed=3, n_subsets=4000)
    with pytest.raises(MetricError, match="at least 1000 subsets"):
        maj_at_k(classes, correct, 5, method="mc", n_subsets=10)


def test_maj_at_k_large_n_exact_is_a_probability_and_k1_is_pass1():
    rng = np.random.default_rng(3)
    classes, correct = random_problem(rng, 256, 6)
    correct = classes == classes[classes >= 0][0]  # make sure one class is correct
    assert maj_at_k(classes, correct, 1) == pytest.approx(correct.mean(), abs=1e-12)
    for k in (2, 64, 255, 256):
        assert 0.0 <= maj_at_k(classes, correct, k) <= 1.0 + 1e-12


def test_maj_at_k_rejects_k_above_n():
    with pytest.raises(MetricError, match="k=4 is larger than n=3"):
        maj_at_k([0, 1, 1], [True, False, False], 4)


# ------------------------------------------------------------------------------------------------ best@k


@pytest.mark.parametrize("seed", range(4))
def test_best_at_k_matches_enumeration_with_ties(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(60):
        n = int(rng.integers(1, 10))
        scores = rng.integers(0, 4, size=n).astype(float)  # few levels: many ties
        correct = rng.random(n) < 0.4
        for k in range(1, n + 1):
            assert best_at_k(scores, correct, k) == pytest.approx(
                float(ref_best(scores, correct, k)), abs=1e-12
            )


def test_best_at_k_hand_cases():
    assert best_at_k([3.0, 2.0, 1.0], [True, False, False], 2) == pytest.approx(2 / 3)
    assert best_at_k([1.0, 1.0], [True, False], 1) == pytest.approx(0.5)
    assert best_at_k([1.0, 1.0], [True, False], 2) == pytest.approx(0.5)  # tie at the top: averaged
    assert best_at_k([0.1, 0.9], [False, True], 2) == pytest.approx(1.0)
    with pytest.raises(MetricError, match="finite"):
        best_at_k([float("nan"), 1.0], [True, False], 1)
    with pytest.raises(MetricError, match="k=3 is larger than n=2"):
        best_at_k([0.0, 1.0], [True, False], 3)


# ---------------------------------------------------------------------------------------- bias–variance


@pytest.mark.parametrize("seed", range(5))
def test_jensen_bound_holds_and_is_tight_at_k2(seed):
    rng = np.random.default_rng(300 + seed)
    rho = rng.beta(0.3, 0.5, size=int(rng.integers(1, 500)))
    ks = [2, 3, 4, 8, 16, 64]
    bv = bias_variance(rho, ks)
    assert bv["bias2"] == pytest.approx((1 - rho.mean()) ** 2)
    assert bv["var"] == pytest.approx(np.mean((rho - rho.mean()) ** 2))
    for k in ks:
        plugin = np.mean((1 - rho) ** k)
        assert bv["one_minus_pass_plugin"][str(k)] == pytest.approx(plugin)
        assert bv["bound"][str(k)] <= plugin + 1e-12
    assert bv["bound"]["2"] == pytest.approx(bv["one_minus_pass_plugin"]["2"], rel=1e-12, abs=1e-15)


def test_bias_variance_and_diversity_intervals_match_a_direct_bootstrap():
    """The intervals of E[ρ], bias², Var[ρ] and distinct answers come from the same resamples as
    `bootstrap_ci`: recompute them resample by resample."""
    from wiseft.metrics import diversity, resample_weights

    rng = np.random.default_rng(7)
    rho = rng.beta(0.5, 0.5, size=200)
    bv = bias_variance(rho, [2], seed=3, n_boot=400)
    weights = resample_weights(len(rho), 3, 400)
    direct = []
    for w in weights:
        sample = np.repeat(rho, w.astype(int))
        direct.append([sample.mean(), (1 - sample.mean()) ** 2, sample.var()])
    lo, hi = np.quantile(np.array(direct), [0.025, 0.975], axis=0)
    for i, key in enumerate(("mean_rho", "bias2", "var")):
        assert bv["ci"][key] == pytest.approx([lo[i], hi[i]], rel=1e-9, abs=1e-12)
        assert bv["ci"][key][0] <= bv[key] <= bv["ci"][key][1]

    problems = [
        ProblemSamples(
            correct=[True] * (i % 4) + [False] * (4 - i % 4),
            classes=list(range(i % 3 + 1)) + [0] * (3 - i % 3),
        )
        for i in range(60)
    ]
    div = diversity(problems, seed=1, n_boot=300)
    lo, hi = div["ci"]["mean_distinct"]
    assert lo <= div["mean_distinct"] <= hi and lo < hi
    distinct = np.array([i % 3 + 1 for i in range(60)], dtype=float)
    assert [lo, hi] == pytest.approx(list(bootstrap_ci(distinct, seed=1, n_boot=300)[1:]))


# ---------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    values = rng.random((400, 3))
    m1, lo1, hi1 = bootstrap_ci(values, seed=5, n_boot=500)
    m2, lo2, hi2 = bootstrap_ci(values, seed=5, n_boot=500)
    assert np.array_equal(lo1, lo2) and np.array_equal(hi1, hi2)
    assert np.all(lo1 < m1) and np.all(m1 < hi1)
    # A normal approximation is an independent check of the width: ±1.96·sd/√P.
    half = 1.96 * values.std(axis=0) / np.sqrt(400)
    assert np.allclose((hi1 - lo1) / 2, half, rtol=0.15)
    assert bootstrap_ci(np.ones(10))[1] == 1.0  # constant values: zero width


def test_bootstrap_constant_zero_and_rejects_empty():
    with pytest.raises(MetricError, match="at least one problem"):
        bootstrap_ci(np.zeros((0, 2)))


# ---------------------------------------------------------------------------------------------- summarize


def make_problems(rng, P=30, n=8, scores=True):
    out = []
    for i in range(P):
        classes, correct = random_problem(rng, n, 4)
        out.append(
            ProblemSamples(
                correct=correct,
                classes=classes,
                scores=rng.random(n) if scores else None,
                n_tokens=rng.integers(1, 50, size=n),
                truncated=rng.random(n) < 0.2,
                problem_id=f"p{i}",
            )
        )
    return out


def test_summarize_shape_and_values_match_references():
    rng = np.random.default_rng(11)
    problems = make_problems(rng)
    s = summarize(problems, [1, 2, 4, 8], seed=0, n_boot=200)
    json.dumps(s)  # JSON-ready
    assert s["n_problems"] == 30 and s["n"] == 8
    assert set(s["metrics"]) == {f"{m}@{k}" for m in ("pass", "maj", "best", "wmaj") for k in (1, 2, 4, 8)}
    for k in (1, 2, 4, 8):
        ref_p = np.mean([float(ref_pass(p.n, p.c, k)) for p in problems])
        ref_m = np.mean([float(ref_maj(list(p.classes), list(p.correct), k)) for p in problems])
        ref_b = np.mean([float(ref_best(list(p.scores), list(p.correct), k)) for p in problems])
        for name, ref in (("pass", ref_p), ("maj", ref_m), ("best", ref_b)):
            entry = s["metrics"][f"{name}@{k}"]
            assert entry["value"] == pytest.approx(ref, abs=1e-12)
            assert entry["lo"] <= entry["value"] <= entry["hi"]
    rho = np.array([p.c / p.n for p in problems])
    bv = s["bias_variance"]
    assert bv["mean_rho"] == pytest.approx(rho.mean())
    assert set(bv["bound"]) == {"1", "2", "4", "8"}
    assert bv["one_minus_pass"]["4"] == pytest.approx(1 - s["metrics"]["pass@4"]["value"])
    div = s["diversity"]
    distinct = [len(set(int(c) for c in p.classes if c >= 0)) for p in problems]
    assert div["mean_distinct"] == pytest.approx(np.mean(distinct))
    assert div["frac_distinct"] == pytest.approx(np.mean(distinct) / 8)
    assert sum(div["rho_hist"]) == 30 and div["rho_edges"] == list(RHO_EDGES)
    tokens = np.concatenate([p.n_tokens for p in problems])
    assert s["tokens"]["mean"] == pytest.approx(tokens.mean())
    assert s["tokens"]["median"] == pytest.approx(np.median(tokens))
    assert s["tokens"]["truncated_frac"] == pytest.approx(
        np.concatenate([p.truncated for p in problems]).mean()
    )
    assert summarize(problems, [1, 2, 4, 8], seed=0, n_boot=200) == s  # same seed, same numbers


def test_summarize_without_scores_or_tokens_omits_best_at_k():
    rng = np.random.default_rng(12)
    problems = [
        ProblemSamples(correct=p.correct, classes=p.classes) for p in make_problems(rng, scores=False)
    ]
    s = summarize(problems, [2, 1], n_boot=50)
    assert set(s["metrics"]) == {"pass@1", "pass@2", "maj@1", "maj@2"}
    assert s["tokens"] == {"mean": None, "median": None, "truncated_frac": None}


@pytest.mark.parametrize(
    "ks,match",
    [
        ([16], "k=16 is larger than n=8 samples for problem p"),
        ([0], "positive integers"),
        ([], "at least one k"),
    ],
)
def test_summarize_rejects_bad_k(ks, match):
    problems = make_problems(np.random.default_rng(1), P=3)
    with pytest.raises(MetricError, match=match):
        summarize(problems, ks)


def test_summarize_rejects_empty_and_inconsistent_inputs():
    with pytest.raises(MetricError, match="no problems"):
        summarize([], [1])
    with pytest.raises(MetricError, match="'classes' has 2 entries but there are 3 samples"):
        ProblemSamples(correct=[True, False, True], classes=[0, 1])
    with pytest.raises(MetricError, match="marked correct but has no answer class"):
        ProblemSamples(correct=[True], classes=[-1])
