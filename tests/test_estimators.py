"""Pool estimators (search/estimators.py) against brute force over every k-subset, closed forms and simulation.

The references below enumerate all C(n, k) subsets with itertools.combinations and apply the selection rule literally
(ties averaged exactly), so a wrong weight, an off-by-one in a binomial or a mishandled tie or None answer shows up.
"""
from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest

from search.analysis.estimators import (
    best_of_k,
    best_of_k_curve,
    binary_accept_at_k,
    bootstrap_ci,
    bootstrap_ci_matrix,
    majority_at_k,
    majority_curve,
    pass_at_k,
    weighted_vote_at_k,
)

TOL = 1e-9
SEEDS = range(300)


# ----------------------------------------------------------------------------------------------------------------
# Brute-force references


def _subsets(n, k):
    return combinations(range(n), k)


def brute_pass(correct, k):
    n = len(correct)
    vals = [float(any(correct[i] for i in s)) for s in _subsets(n, k)]
    return sum(vals) / len(vals)


def brute_best(scores, rewards, k):
    n = len(scores)
    vals = []
    for s in _subsets(n, k):
        top = max(scores[i] for i in s)
        winners = [rewards[i] for i in s if scores[i] == top]
        vals.append(sum(winners) / len(winners))
    return sum(vals) / len(vals)


def _vote_value(subset, answers, weights, correct_answers):
    votes = {}
    for i in subset:
        a = answers[i]
        if a is None:
            continue
        votes[a] = votes.get(a, 0.0) + weights[i]
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    return sum(a in correct_answers for a in tied) / len(tied)


def brute_vote(answers, weights, correct_answers, k):
    n = len(answers)
    vals = [_vote_value(s, answers, weights, correct_answers) for s in _subsets(n, k)]
    return sum(vals) / len(vals)


def brute_binary(accepted, correct, k, cost):
    n = len(accepted)
    acc = rew = abst = 0.0
    count = 0
    for s in _subsets(n, k):
        count += 1
        picked = [i for i in s if accepted[i]]
        if not picked:
            abst += 1.0
            continue
        nc = sum(bool(correct[i]) for i in picked)
        acc += nc / len(picked)
        rew += (nc - cost * (len(picked) - nc)) / len(picked)
    return acc / count, rew / count, abst / count


# ----------------------------------------------------------------------------------------------------------------
# Random small pools with ties, repeated answers and None answers


def random_pool(seed):
    """A pool of n in 1..9 samples: answers from a small alphabet plus None, per-answer correctness, tied scores."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 10))
    alphabet = list(range(int(rng.integers(1, 5))))
    p_none = float(rng.choice([0.0, 0.2, 0.5]))
    answers = [None if rng.random() < p_none else int(rng.choice(alphabet)) for _ in range(n)]
    # 0, 1 or several correct answers
    correct_answers = {a for a in alphabet if rng.random() < 0.35}
    correct = [a is not None and a in correct_answers for a in answers]
    # scores: few distinct values -> many ties; sometimes continuous
    if rng.random() < 0.7:
        scores = [float(x) for x in rng.integers(0, 3, size=n)]
    else:
        scores = [float(x) for x in rng.normal(size=n)]
    # rewards: +1 / -cost / 0 style outcomes, or arbitrary floats
    if rng.random() < 0.5:
        rewards = [1.0 if c else float(rng.choice([0.0, -1.5])) for c in correct]
    else:
        rewards = [float(x) for x in rng.normal(size=n)]
    # dyadic weights keep vote sums exact (so exact ties are real ties for the reference); some negative
    if rng.random() < 0.6:
        weights = [float(x) / 4 for x in rng.integers(-2, 6, size=n)]
    else:
        weights = [float(x) for x in rng.uniform(-0.5, 2.0, size=n)]
    accepted = [bool(x) for x in rng.random(n) < rng.choice([0.2, 0.5, 0.8])]
    return dict(n=n, answers=answers, correct=correct, correct_answers=correct_answers, scores=scores,
                rewards=rewards, weights=weights, accepted=accepted, cost=float(rng.choice([0.0, 1.0, 2.5])))


POOLS = [random_pool(s) for s in SEEDS]


def test_pools_exercise_the_edge_cases():
    """The generator really produces ties, repeated answers, None answers and pools without a correct sample."""
    assert any(len(set(p["scores"])) < p["n"] for p in POOLS)
    assert any(None in p["answers"] for p in POOLS)
    assert any(all(a is None for a in p["answers"]) and p["n"] > 1 for p in POOLS)
    assert any(len([a for a in p["answers"] if a is not None]) > len({a for a in p["answers"] if a is not None})
               for p in POOLS)
    assert any(not any(p["correct"]) for p in POOLS)
    assert any(len({a for a in p["answers"] if a in p["correct_answers"]}) >= 2 for p in POOLS)
    assert {p["n"] for p in POOLS} == set(range(1, 10))


# ----------------------------------------------------------------------------------------------------------------
# pass@k


@pytest.mark.parametrize("seed", SEEDS[:100])
def test_pass_at_k_matches_enumeration(seed):
    p = POOLS[seed]
    n, c = p["n"], sum(p["correct"])
    for k in range(1, n + 1):
        assert pass_at_k(n, c, k) == pytest.approx(brute_pass(p["correct"], k), abs=TOL)


def test_pass_at_k_all_n_c_k_small():
    for n in range(1, 10):
        for c in range(0, n + 1):
            correct = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=TOL)
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass(correct, k), abs=TOL)


def test_pass_at_k_equals_best_of_k_with_correctness_as_score_and_reward():
    for p in POOLS:
        y = [float(c) for c in p["correct"]]
        n, c = p["n"], sum(p["correct"])
        curve = best_of_k_curve(y, y, list(range(1, n + 1)))
        for k in range(1, n + 1):
            assert best_of_k(y, y, k) == pytest.approx(pass_at_k(n, c, k), abs=TOL)
            assert curve[k - 1] == pytest.approx(pass_at_k(n, c, k), abs=TOL)


def test_pass_at_k_full_pool_is_one_when_any_correct():
    for n in (1, 2, 5, 17, 100, 1000, 4096):
        for c in sorted({c for c in (1, 2, n // 2, n - 1, n) if 1 <= c <= n}):
            assert pass_at_k(n, c, n) == 1.0
        assert pass_at_k(n, 0, n) == 0.0


def test_pass_at_k_large_pool_is_finite_in_range_and_exact():
    n = 4096
    for c in (0, 1, 2, 7, 100, 2048, 4000, 4095, 4096):
        prev = -1.0
        for k in (1, 2, 3, 10, 64, 500, 1000, 2048, 4000, 4095, 4096):
            v = pass_at_k(n, c, k)
            assert math.isfinite(v) and 0.0 <= v <= 1.0
            assert v >= prev - 1e-12  # coverage never falls with k
            prev = v
            if k in (1, 10, 1000, 4096):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert v == pytest.approx(float(exact), abs=1e-9)
    # best_of_k on binary scores at the same size agrees with pass@k (ratios, no overflow there either)
    y = [1.0] * 3 + [0.0] * (n - 3)
    curve = best_of_k_curve(y, y, [1, 50, 4096])
    assert np.all(np.isfinite(curve))
    assert curve == pytest.approx([pass_at_k(n, 3, k) for k in (1, 50, 4096)], abs=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# best-of-k


@pytest.mark.parametrize("seed", SEEDS)
def test_best_of_k_matches_enumeration(seed):
    p = POOLS[seed]
    n = p["n"]
    ks = list(range(1, n + 1))
    curve = best_of_k_curve(p["scores"], p["rewards"], ks)
    assert curve.shape == (n,)
    for k in ks:
        ref = brute_best(p["scores"], p["rewards"], k)
        assert best_of_k(p["scores"], p["rewards"], k) == pytest.approx(ref, abs=TOL)
        assert curve[k - 1] == pytest.approx(ref, abs=TOL)


def test_best_of_k_all_tied_is_pool_mean_and_unsorted_ks():
    rewards = [1.0, -2.0, 0.0, 0.5, 3.0]
    for k in range(1, 6):
        assert best_of_k([0.3] * 5, rewards, k) == pytest.approx(np.mean(rewards), abs=TOL)
    scores = [0.1, 0.9, 0.9, -1.0, 0.5]
    ks = [4, 1, 3, 2, 5, 3]
    curve = best_of_k_curve(scores, rewards, ks)
    assert curve == pytest.approx([brute_best(scores, rewards, k) for k in ks], abs=TOL)


# ----------------------------------------------------------------------------------------------------------------
# majority vote


@pytest.mark.parametrize("seed", SEEDS)
def test_majority_matches_enumeration(seed):
    p = POOLS[seed]
    n = p["n"]
    ks = list(range(1, n + 1))
    curve = majority_curve(p["answers"], p["correct"], ks)
    for k in ks:
        ref = brute_vote(p["answers"], [1.0] * n, p["correct_answers"], k)
        assert majority_at_k(p["answers"], p["correct"], k) == pytest.approx(ref, abs=TOL)
        assert curve[k - 1] == pytest.approx(ref, abs=TOL)


def test_majority_handcrafted_ties_and_none():
    # correct "a" x2, "b" x2, None x2: at k = 6 "a" ties with "b" -> 1/2
    ans = ["a", "a", "b", "b", None, None]
    cor = [True, True, False, False, False, False]
    assert majority_at_k(ans, cor, 6) == pytest.approx(0.5, abs=TOL)
    # k = 1: 2/6 pick an "a"; the None picks vote for nobody and count as wrong
    assert majority_at_k(ans, cor, 1) == pytest.approx(2 / 6, abs=TOL)
    # all None: never correct
    assert majority_at_k([None, None, None], [False, False, False], 2) == 0.0
    # None samples marked "correct" do not vote
    assert majority_at_k([None, "x"], [True, False], 2) == 0.0


def test_majority_inconsistent_correctness_raises():
    with pytest.raises(ValueError):
        majority_at_k(["a", "a", "b"], [True, False, False], 2)


def test_majority_large_pool_is_finite():
    rng = np.random.default_rng(0)
    n = 1200
    ans = [None if x == 5 else int(x) for x in rng.integers(0, 6, size=n)]
    cor = [a == 0 for a in ans]
    curve = majority_curve(ans, cor, [1, 2, 5, 25, 101])
    assert np.all(np.isfinite(curve)) and np.all((curve >= 0) & (curve <= 1))
    c_frac = sum(cor) / n
    assert curve[0] == pytest.approx(c_frac, abs=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# weighted vote (Monte Carlo)

WV_POOLS = [p for p in POOLS if p["n"] >= 2][:70]


def test_weighted_vote_matches_enumeration_within_mc_error():
    worst = 0.0
    for i, p in enumerate(WV_POOLS):
        n = p["n"]
        for k in range(1, n + 1):
            est, se = weighted_vote_at_k(p["answers"], p["weights"], p["correct"], k, n_draws=2000, seed=i)
            ref = brute_vote(p["answers"], p["weights"], p["correct_answers"], k)
            assert 0.0 <= est <= 1.0 and se >= 0.0
            assert abs(est - ref) <= 5 * se + 1e-12, (i, k, est, ref, se)
            if k == n:
                assert se == 0.0 and est == pytest.approx(ref, abs=TOL)
            worst = max(worst, abs(est - ref) / se if se > 0 else 0.0)
    assert worst > 0.0  # the MC path was actually exercised with some error


def test_weighted_vote_equal_weights_agrees_with_majority():
    for i, p in enumerate(WV_POOLS[:40]):
        n = p["n"]
        for k in range(1, n + 1):
            w = [0.7] * n  # equal, not 1, so weight sums are not integers
            est, se = weighted_vote_at_k(p["answers"], w, p["correct"], k, n_draws=2000, seed=100 + i)
            maj = majority_at_k(p["answers"], p["correct"], k)
            assert abs(est - maj) <= 5 * se + 1e-12, (i, k, est, maj, se)
            if k == n:
                assert se == 0.0 and est == pytest.approx(maj, abs=TOL)


def test_weighted_vote_k_equals_n_is_exact():
    ans = ["a", "b", "b", None, "c"]
    cor = [True, False, False, False, False]
    # "a" 2.0 vs "b" 0.75 + 0.75 vs "c" 1.0
    assert weighted_vote_at_k(ans, [2.0, 0.75, 0.75, 9.0, 1.0], cor, 5) == (1.0, 0.0)
    # "b" wins
    assert weighted_vote_at_k(ans, [1.0, 0.75, 0.75, 9.0, 1.0], cor, 5) == (0.0, 0.0)
    # "a" ties "b" (0.1 + 0.2 vs 0.3 is a rounding-level tie)
    est, se = weighted_vote_at_k(ans, [0.3, 0.1, 0.2, 9.0, 0.0], cor, 5)
    assert se == 0.0 and est == pytest.approx(0.5, abs=TOL)
    # negative weights: the answer with the least negative sum wins, absent answers do not win
    est, se = weighted_vote_at_k(["a", "b"], [-1.0, -2.0], [True, False], 2)
    assert (est, se) == (1.0, 0.0)


def test_weighted_vote_deterministic_for_a_seed():
    p = next(q for q in WV_POOLS if q["n"] >= 6 and any(q["correct"]) and not all(q["correct"]))
    a = weighted_vote_at_k(p["answers"], p["weights"], p["correct"], 3, n_draws=500, seed=7)
    b = weighted_vote_at_k(p["answers"], p["weights"], p["correct"], 3, n_draws=500, seed=7)
    assert a == b
    others = {weighted_vote_at_k(p["answers"], p["weights"], p["correct"], 3, n_draws=500, seed=s)[0]
              for s in range(8, 14)}
    ref = brute_vote(p["answers"], p["weights"], p["correct_answers"], 3)
    if any(_vote_value(s, p["answers"], p["weights"], p["correct_answers"]) != ref
           for s in _subsets(p["n"], 3)):
        assert len(others | {a[0]}) > 1  # the seed matters when the subsets disagree


# ----------------------------------------------------------------------------------------------------------------
# binary verifier with abstention


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_accept_matches_enumeration_and_closed_form(seed):
    p = POOLS[seed]
    n, acc, cor, cost = p["n"], p["accepted"], p["correct"], p["cost"]
    A = sum(acc)
    cA = sum(a and c for a, c in zip(acc, cor))
    for k in range(1, n + 1):
        got = binary_accept_at_k(acc, cor, k, cost)
        ref = brute_binary(acc, cor, k, cost)
        assert got == pytest.approx(ref, abs=TOL)
        # ESTIMATORS.md closed form
        miss = math.comb(n - A, k) / math.comb(n, k)
        if A == 0:
            closed = (0.0, 0.0, 1.0)
        else:
            closed = ((1 - miss) * cA / A, (1 - miss) * (cA - cost * (A - cA)) / A, miss)
        assert got == pytest.approx(closed, abs=TOL)
        # and the three parts add up: accurate + false positive + abstain = 1
        acc_k, rew_k, ab_k = got
        if A:
            fp = (1 - miss) * (A - cA) / A
            assert acc_k + fp + ab_k == pytest.approx(1.0, abs=TOL)
            assert rew_k == pytest.approx(acc_k - cost * fp, abs=TOL)


def _big_pool(n, q1, q0):
    """A pool of n with exactly q1*n accepted-correct, q0*n accepted-wrong, the rest rejected (half correct)."""
    a1, a0 = round(q1 * n), round(q0 * n)
    rest = n - a1 - a0
    accepted = np.r_[np.ones(a1 + a0, bool), np.zeros(rest, bool)]
    correct = np.r_[np.ones(a1, bool), np.zeros(a0, bool), np.arange(rest) % 2 == 0]
    return accepted, correct


def test_binary_accept_large_pool_converges_to_ppv_formula():
    # for a large pool with rates q1, q0 the pool estimator tends to PPV (1 - r^k), abstain r^k, reward v (1 - r^k)
    n = 200_000
    for p, tpr, fpr in [(0.8, 0.95, 0.15), (0.05, 0.95, 0.15), (0.3, 0.6, 0.05)]:
        q1, q0 = p * tpr, (1 - p) * fpr
        r, ppv = 1 - q1 - q0, q1 / (q1 + q0)
        acc, cor = _big_pool(n, q1, q0)
        for cost in (0.0, 1.0, 4.0):
            v = ppv * (1 + cost) - cost
            for k in (1, 2, 5, 20):
                a_k, u_k, ab_k = binary_accept_at_k(acc, cor, k, cost)
                assert a_k == pytest.approx(ppv * (1 - r ** k), abs=1e-3)
                assert ab_k == pytest.approx(r ** k, abs=1e-3)
                assert u_k == pytest.approx(v * (1 - r ** k), abs=1e-3)


def test_binary_accept_optimal_k_example_of_estimators_md():
    # two problem types (0.6, 0.4), p = (0.8, 0.05), TPR 0.95, FPR 0.15: best k is 2 at cost 1 and 2, 1 at cost 4
    n = 100_000
    pools = [_big_pool(n, p * 0.95, (1 - p) * 0.15) for p in (0.8, 0.05)]
    for cost, best in [(1.0, 2), (2.0, 2), (4.0, 1)]:
        u = [0.6 * binary_accept_at_k(*pools[0], k, cost)[1] + 0.4 * binary_accept_at_k(*pools[1], k, cost)[1]
             for k in range(1, 11)]
        assert int(np.argmax(u)) + 1 == best


# ----------------------------------------------------------------------------------------------------------------
# bootstrap intervals


def test_bootstrap_ci_coverage_bernoulli():
    rng = np.random.default_rng(12345)
    hits, ratios = 0, []
    for i in range(200):
        x = (rng.random(100) < 0.3).astype(float)
        lo, hi = bootstrap_ci(x, n_resamples=1000, level=0.95, seed=i)
        assert lo <= x.mean() <= hi
        hits += lo <= 0.3 <= hi
        m = x.mean()
        ratios.append((hi - lo) / (2 * 1.959964 * math.sqrt(m * (1 - m) / 100)))
    assert 0.88 <= hits / 200 <= 0.99
    # the width matches the normal-approximation 95% interval on average (a 90% interval would give ~0.84)
    assert 0.93 <= float(np.mean(ratios)) <= 1.07


def test_bootstrap_ci_deterministic_for_a_seed():
    x = np.random.default_rng(3).normal(size=50)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    lo, hi = bootstrap_ci(x, seed=5)
    assert lo < x.mean() < hi
    # narrower at a lower level
    lo2, hi2 = bootstrap_ci(x, level=0.5, seed=5)
    assert lo <= lo2 <= hi2 <= hi


def test_bootstrap_ci_degenerate():
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([0.25] * 30) == (0.25, 0.25)


def test_bootstrap_ci_matrix_consistent_with_columns():
    # The implementation draws the resampled problem sets independently of the number of columns (bootstrap_ci
    # itself calls bootstrap_ci_matrix on one column), so each column equals bootstrap_ci on it with the same seed.
    rng = np.random.default_rng(1)
    X = np.c_[rng.random((80, 3)), (rng.random(80) < 0.3).astype(float), np.full(80, 0.5)]
    lo, hi = bootstrap_ci_matrix(X, n_resamples=1000, seed=11)
    assert lo.shape == hi.shape == (X.shape[1],)
    mean = X.mean(axis=0)
    assert np.all(lo <= mean + 1e-12) and np.all(mean <= hi + 1e-12)
    for j in range(X.shape[1]):
        l1, h1 = bootstrap_ci(X[:, j], n_resamples=1000, seed=11)
        assert lo[j] == pytest.approx(l1, abs=1e-12) and hi[j] == pytest.approx(h1, abs=1e-12)
    assert lo[-1] == hi[-1] == 0.5
    lo2, hi2 = bootstrap_ci_matrix(X, n_resamples=1000, seed=11)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)


# ----------------------------------------------------------------------------------------------------------------
# invalid input


@pytest.mark.parametrize("k", [0, -1, 4, 10, 2.5, True])
def test_invalid_k_raises(k):
    ans, cor, s, acc = ["a", "b", None], [True, False, False], [0.1, 0.2, 0.3], [True, False, True]
    with pytest.raises(ValueError):
        pass_at_k(3, 1, k)
    with pytest.raises(ValueError):
        best_of_k(s, s, k)
    with pytest.raises(ValueError):
        best_of_k_curve(s, s, [k])
    with pytest.raises(ValueError):
        majority_at_k(ans, cor, k)
    with pytest.raises(ValueError):
        majority_curve(ans, cor, [k])
    if not isinstance(k, bool):  # inside a list of ints numpy turns True into 1, which is then a valid k
        with pytest.raises(ValueError):
            best_of_k_curve(s, s, [1, k])
        with pytest.raises(ValueError):
            majority_curve(ans, cor, [k, 1])
    with pytest.raises(ValueError):
        weighted_vote_at_k(ans, s, cor, k)
    with pytest.raises(ValueError):
        binary_accept_at_k(acc, cor, k)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        best_of_k([0.1, 0.2, 0.3], [1.0, 0.0], 1)
    with pytest.raises(ValueError):
        best_of_k_curve([0.1, 0.2], [1.0, 0.0, 1.0], [1])
    with pytest.raises(ValueError):
        majority_at_k(["a", "b", "c"], [True, False], 1)
    with pytest.raises(ValueError):
        majority_curve(["a", "b"], [True, False, False], [1])
    with pytest.raises(ValueError):
        weighted_vote_at_k(["a", "b"], [1.0, 1.0, 1.0], [True, False], 1)
    with pytest.raises(ValueError):
        weighted_vote_at_k(["a", "b", "c"], [1.0, 1.0, 1.0], [True, False], 1)
    with pytest.raises(ValueError):
        binary_accept_at_k([True, False], [True], 1)


def test_other_invalid_input_raises():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)  # c > n
    with pytest.raises(ValueError):
        pass_at_k(3, -1, 1)
    with pytest.raises(ValueError):
        pass_at_k(0, 0, 1)  # empty pool
    with pytest.raises(ValueError):
        best_of_k([], [], 1)
    with pytest.raises(ValueError):
        majority_at_k([], [], 1)
    with pytest.raises(ValueError):
        best_of_k([0.1, float("nan")], [1.0, 0.0], 1)
    with pytest.raises(ValueError):
        weighted_vote_at_k(["a"], [float("inf")], [True], 1)
    with pytest.raises(ValueError):
        weighted_vote_at_k(["a", "b"], [1.0, 1.0], [True, False], 1, n_draws=0)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap_ci_matrix(np.zeros(5))
