"""Weighted maj@k (and best@k) against brute-force enumeration of every k-subset in exact arithmetic."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from wiseft.errors import MetricError
from wiseft.metrics import (
    WMAJ_EXACT_MAX_SUBSETS,
    ProblemSamples,
    best_at_k,
    maj_at_k,
    summarize,
    vote_weights,
    weighted_maj_at_k,
)

# ----------------------------------------------------------------------------- references (brute force)


def ref_wmaj(classes, correct, weights, k):
    """Mean over every k-subset: each class's vote is the exact (rational) sum of its samples' weights;
    the classes present compete, m tied at the top share the credit 1/m; class −1 never votes."""
    good = {cl for cl, ok in zip(classes, correct, strict=True) if ok}
    total, count = Fraction(0), 0
    for subset in itertools.combinations(range(len(classes)), k):
        count += 1
        votes = {}
        for i in subset:
            if classes[i] >= 0:
                votes[classes[i]] = votes.get(classes[i], Fraction(0)) + Fraction(float(weights[i]))
        if not votes:
            continue
        top = max(votes.values())
        tied = [cl for cl, v in votes.items() if v == top]
        total += Fraction(sum(cl in good for cl in tied), len(tied))
    return total / count


def ref_best(scores, correct, k):
    total, count = Fraction(0), 0
    for subset in itertools.combinations(range(len(scores)), k):
        count += 1
        top = max(scores[i] for i in subset)
        winners = [i for i in subset if scores[i] == top]
        total += Fraction(sum(bool(correct[i]) for i in winners), len(winners))
    return total / count


def random_case(rng, n, n_classes=4, dyadic=True):
    classes = rng.integers(-1, n_classes, size=n)
    correct = classes == 0  # class 0 holds the right answer
    if dyadic:  # few exact binary values: float sums are exact, so ties happen and are exact
        weights = rng.choice([0.0, 0.25, 0.5, 1.0, 1.5], size=n)
    else:
        weights = rng.random(n)
    return classes, correct, weights


# ------------------------------------------------------------------------------------- weighted maj@k


@pytest.mark.parametrize("dyadic", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_wmaj_matches_brute_force_exactly(seed, dyadic):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n = int(rng.integers(1, 10))
        classes, correct, weights = random_case(rng, n, dyadic=dyadic)
        for k in range(1, n + 1):
            got = weighted_maj_at_k(classes, correct, weights, k)
            assert got == pytest.approx(float(ref_wmaj(classes, correct, weights, k)), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_wmaj_with_equal_weights_is_maj(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        n = int(rng.integers(1, 13))
        classes, correct, _ = random_case(rng, n)
        for k in range(1, n + 1):
            assert weighted_maj_at_k(classes, correct, np.full(n, 0.7), k) == pytest.approx(
                maj_at_k(classes, correct, k), abs=1e-12
            )


@pytest.mark.parametrize(
    "classes,correct,weights,k,expected",
    [
        ([0, 1, 1], [1, 0, 0], [3.0, 1.0, 1.0], 3, 1.0),  # one heavy right vote beats two light wrong ones
        ([0, 1, 1], [1, 0, 0], [1.0, 1.0, 1.0], 3, 0.0),  # equal weights: plain majority
        ([0, 1], [1, 0], [0.5, 0.5], 2, 0.5),  # tie: credit 1/2
        ([0, 1, 2], [1, 0, 0], [0.0, 0.0, 0.0], 3, 1 / 3),  # all-zero votes: the three classes tie
        ([-1, -1], [0, 0], [1.0, 1.0], 1, 0.0),  # no answer never votes
        ([0, -1], [1, 0], [0.1, 5.0], 2, 1.0),  # a heavy unparseable sample does not count
    ],
)
def test_wmaj_hand_cases(classes, correct, weights, k, expected):
    assert weighted_maj_at_k(classes, correct, weights, k) == pytest.approx(expected, abs=1e-15)


def test_wmaj_ties_tolerate_summation_order():
    # 0.1 + 0.2 != 0.3 in float64; the two classes are still a tie (credit 1/2), whatever the order.
    assert weighted_maj_at_k([0, 0, 1], [1, 1, 0], [0.1, 0.2, 0.3], 3) == pytest.approx(0.5)
    assert weighted_maj_at_k([1, 0, 0], [0, 1, 1], [0.3, 0.2, 0.1], 3) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "transform,scores,expected",
    [
        ("identity", [0.0, 0.5, 1.0], [0.0, 0.5, 1.0]),
        ("sigmoid", [-800.0, 0.0, 2.0, 800.0], [0.0, 0.5, 1 / (1 + math.exp(-2.0)), 1.0]),
        ("exp", [-0.5, 0.0, -1000.0], [math.exp(-0.5), 1.0, 0.0]),
    ],
)
def test_vote_transforms(transform, scores, expected):
    np.testing.assert_allclose(vote_weights(scores, transform), expected, rtol=1e-15, atol=0)


def test_wmaj_applies_the_transform():
    rng = np.random.default_rng(7)
    classes, correct, _ = random_case(rng, 8)
    logits = rng.normal(0, 3, size=8)
    probs = 1 / (1 + np.exp(-logits))
    for k in (2, 5):
        assert weighted_maj_at_k(classes, correct, logits, k, transform="sigmoid") == pytest.approx(
            float(ref_wmaj(classes, correct, probs, k)), abs=1e-12
        )


def test_wmaj_monte_carlo_is_close_and_reproducible():
    rng = np.random.default_rng(3)
    for _ in range(6):
        classes, correct, weights = random_case(rng, 12, dyadic=False)
        exact = float(ref_wmaj(classes, correct, weights, 4))
        mc = weighted_maj_at_k(classes, correct, weights, 4, method="mc", seed=1)
        assert mc == pytest.approx(exact, abs=0.04)  # 2000 subsets: standard error ≤ 0.5/√2000 ≈ 0.011
        assert weighted_maj_at_k(classes, correct, weights, 4, method="mc", seed=1) == mc


def test_wmaj_auto_switches_to_monte_carlo_beyond_the_limit():
    n, k = 20, 6
    assert math.comb(n, k) > WMAJ_EXACT_MAX_SUBSETS
    rng = np.random.default_rng(4)
    classes, correct, weights = random_case(rng, n, n_classes=3, dyadic=False)
    # Reference in float64 (exact enumeration of 38 760 subsets; no ties with continuous weights).
    good = {c for c, ok in zip(classes, correct, strict=True) if ok}
    credits = []
    for subset in itertools.combinations(range(n), k):
        votes = {}
        for i in subset:
            if classes[i] >= 0:
                votes[classes[i]] = votes.get(classes[i], 0.0) + weights[i]
        credits.append(float(max(votes, key=votes.get) in good) if votes else 0.0)
    auto = weighted_maj_at_k(classes, correct, weights, k, seed=5)
    assert auto == weighted_maj_at_k(classes, correct, weights, k, method="mc", seed=5)
    assert auto == pytest.approx(np.mean(credits), abs=0.04)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scores=[0.5, float("nan")]), "finite"),
        (dict(scores=[-0.5, 1.0]), "transform 'identity' leaves negative votes .* name the verifier"),
        (dict(transform="softmax"), "unknown vote transform 'softmax'"),
        (dict(k=3), "k=3 is larger than n=2"),
        (dict(method="mc", n_subsets=10), "at least 1000 subsets"),
        (dict(method="nope"), "method must be"),
        (dict(scores=[1.0]), "2 classes, 2 correctness flags and 1 scores"),
    ],
)
def test_wmaj_rejects_bad_input(kwargs, match):
    args = dict(classes=[0, 1], correct=[True, False], scores=[0.5, 0.5], k=1) | kwargs
    with pytest.raises(MetricError, match=match):
        weighted_maj_at_k(**args)


def test_wmaj_exact_beyond_the_limit_is_refused():
    with pytest.raises(MetricError, match=r"C\(20, 6\) = 38760; use method 'mc'"):
        weighted_maj_at_k([0] * 20, [True] * 20, [1.0] * 20, 6, method="exact")


# ----------------------------------------------------------------------------------------------- best@k


@pytest.mark.parametrize("seed", range(3))
def test_best_at_k_matches_brute_force_on_continuous_and_tied_scores(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(25):
        n = int(rng.integers(1, 10))
        correct = rng.random(n) < 0.4
        scores = rng.normal(size=n) if rng.random() < 0.5 else rng.integers(0, 3, size=n).astype(float)
        for k in range(1, n + 1):
            assert best_at_k(scores, correct, k) == pytest.approx(
                float(ref_best(scores, correct, k)), abs=1e-12
            )


# --------------------------------------------------------------------------------------------- summarize


def _problems(rng, P=12, n=6, scores=True):
    out = []
    for i in range(P):
        classes, correct, _ = random_case(rng, n)
        out.append(
            ProblemSamples(
                correct=correct,
                classes=classes,
                scores=rng.normal(0, 2, size=n) if scores else None,
                problem_id=f"p{i}",
            )
        )
    return out


def test_summarize_adds_wmaj_with_the_named_transform():
    problems = _problems(np.random.default_rng(9))
    s = summarize(problems, [1, 2, 4], n_boot=100)
    assert s["vote_transform"] == "sigmoid"  # the default for scores of unknown origin
    assert {f"wmaj@{k}" for k in (1, 2, 4)} <= set(s["metrics"])
    for k in (1, 2, 4):
        ref = np.mean(
            [float(ref_wmaj(p.classes, p.correct, 1 / (1 + np.exp(-p.scores)), k)) for p in problems]
        )
        assert s["metrics"][f"wmaj@{k}"]["value"] == pytest.approx(ref, abs=1e-12)
    # wmaj@1 is Pass@1: one sample, its own vote.
    assert s["metrics"]["wmaj@1"]["value"] == pytest.approx(s["metrics"]["pass@1"]["value"], abs=1e-12)
    s_exp = summarize(problems, [2], n_boot=100, vote_transform="exp")
    assert s_exp["vote_transform"] == "exp"
    ref = np.mean([float(ref_wmaj(p.classes, p.correct, np.exp(p.scores), 2)) for p in problems])
    assert s_exp["metrics"]["wmaj@2"]["value"] == pytest.approx(ref, abs=1e-12)


def test_summarize_without_scores_has_no_wmaj_and_no_transform():
    s = summarize(_problems(np.random.default_rng(10), scores=False), [1, 2], n_boot=50)
    assert set(s["metrics"]) == {"pass@1", "pass@2", "maj@1", "maj@2"}
    assert "vote_transform" not in s


def test_summarize_names_the_problem_with_negative_identity_votes():
    with pytest.raises(MetricError, match="problem p0: weighted maj@k: transform 'identity'"):
        summarize(_problems(np.random.default_rng(11)), [2], vote_transform="identity")


# ------------------------------------------------- per-problem tables computed once, reused exactly


def test_a_table_handed_to_summarize_gives_the_same_summary_and_a_mismatch_is_refused():
    from wiseft.metrics import problem_table

    problems = _problems(np.random.default_rng(3))
    table = problem_table(problems, [1, 2, 4], seed=5, vote_transform="exp")
    assert not table.values.flags.writeable
    plain = summarize(problems, [1, 2, 4], seed=5, n_boot=100, vote_transform="exp")
    assert summarize(problems, [4, 2, 1], seed=5, n_boot=100, vote_transform="exp", table=table) == plain
    for kw in ({"ks": [1, 2]}, {"seed": 6}, {"vote_transform": "sigmoid"}):
        args = {"ks": [1, 2, 4], "seed": 5, "vote_transform": "exp", **kw}
        ks = args.pop("ks")
        with pytest.raises(MetricError, match="per-problem table was computed for ks"):
            summarize(problems, ks, n_boot=100, table=table, **args)


def test_paired_tables_reuse_known_tables_only_where_they_match():
    from wiseft.metrics import problem_table
    from wiseft.paired import PairedTables

    rng = np.random.default_rng(4)
    samples = {"a": _problems(rng), "b": _problems(rng)}
    plain = PairedTables(samples, [1, 2, 4], seed=2, n_boot=200)
    known = {
        "a": problem_table(samples["a"], [1, 2, 4], seed=2),  # matches: used as it is
        "b": problem_table(samples["b"], [1, 2, 4], seed=2, vote_transform="exp"),  # another transform
    }
    reused = PairedTables(samples, [4, 2, 1], seed=2, n_boot=200, known=known)
    assert reused.tables["a"][1] is known["a"].values
    assert reused.tables["b"][1] is not known["b"].values
    for name in samples:
        assert reused.tables[name][0] == plain.tables[name][0]
        np.testing.assert_array_equal(reused.tables[name][1], plain.tables[name][1])
    assert reused.diff("a", "b", "wmaj@4") == plain.diff("a", "b", "wmaj@4")
