"""Compute-optimal allocation: each choice against brute force over every option, the matching budget against
hand-computed interpolation, and a simulated world where easy and hard problems want different strategies."""
import itertools

import numpy as np
import pytest

from search.analysis import allocation as al
from search.engine.pool_files import PoolProblem


def test_matching_budget_interpolates_in_log_k():
    ks, curve = [1, 2, 4], np.array([0.2, 0.4, 0.6])
    assert al.matching_budget(ks, curve, 0.1) == 1
    assert al.matching_budget(ks, curve, 0.5) == pytest.approx(2 ** 1.5)
    assert al.matching_budget(ks, curve, 0.4) == pytest.approx(2)
    assert np.isnan(al.matching_budget(ks, curve, 0.61))


def test_signals_and_bins():
    ps = [PoolProblem("a", ["1", "1", "2", None, "1"], [True, True, False, False, True], [1] * 5,
                      scores={"v": [0.2, 0.4, 0.6, 0.8, 1.0]}),
          PoolProblem("b", [None, None, "3", "3", "3"], [False] * 5, [1] * 5, scores={"v": [0.0] * 5})]
    np.testing.assert_allclose(al.signal(ps, "oracle", 4), [0.6, 0.0])
    np.testing.assert_allclose(al.signal(ps, "agreement", 4), [0.5, 0.5])
    np.testing.assert_allclose(al.signal(ps, "agreement", 3), [2 / 3, 1 / 3])
    np.testing.assert_allclose(al.signal(ps, "score:v", 4), [0.5, 0.0])
    x = np.arange(100.0)
    assert np.bincount(al.bins_of(x, x, 4)).tolist() == [25, 25, 25, 25]
    assert al.bins_of(np.zeros(10), np.array([-1.0, 0.0, 1.0]), 4).tolist() == [0, 1, 1]   # tied edges merge


def random_strategies(rng, P=40, m=0, give_up=True):
    ks = [1, 2, 4, 8]
    acc = rng.random((P, 2, len(ks)))
    return al.Strategies(["majority", "argmax:v"], ks, acc, rng.random(P) * 0.3, m)


@pytest.mark.parametrize("seed", range(5))
def test_compute_optimal_picks_the_train_best_per_bin(seed):
    rng = np.random.default_rng(seed)
    S = random_strategies(rng, m=1 if seed % 2 else 0)
    sig = rng.random(40)
    train, test = np.arange(0, 40, 2), np.arange(1, 40, 2)
    for B in (2, 5, 9):
        got, spent = al.compute_optimal(S, sig, train, test, B, 3)
        edges = np.unique(np.quantile(sig[train], [1 / 3, 2 / 3]))
        acc, cost = [], []
        for i in test:
            b = int((sig[i] >= edges).sum())
            rows = [j for j in train if int((sig[j] >= edges).sum()) == b]
            options = [(S.acc[rows, r, ki].mean(), -k, r, ki) for r in range(2) for ki, k in enumerate(S.ks)
                       if k <= B - S.m]
            _, negk, r, ki = max(options)
            acc.append(S.acc[i, r, ki])
            cost.append(-negk + S.m)
        assert got == pytest.approx(np.mean(acc)) and spent == pytest.approx(np.mean(cost))


@pytest.mark.parametrize("seed", range(5))
def test_adaptive_budget_is_the_best_affordable_allocation(seed):
    rng = np.random.default_rng(seed)
    S = random_strategies(rng, m=seed % 2)
    sig = rng.random(40)
    train, test = np.arange(0, 40, 2), np.arange(1, 40, 2)
    edges = np.unique(np.quantile(sig[train], [1 / 3, 2 / 3]))
    bin_of = {i: int((sig[i] >= edges).sum()) for i in range(40)}
    def bin_value(b, k):       # train accuracy sum of bin b at k, with the rule best on that bin
        rows = [j for j in train if bin_of[j] == b]
        if k == 0:
            return sum(S.fallback[j] for j in rows)
        return max(sum(S.acc[j, r, S.ks.index(k)] for j in rows) for r in range(2))

    for B in (3, 4.5, 8):
        got, spent, chosen = al.allocate_budget(S, sig, train, test, B, 3)
        best = None
        for combo in itertools.product([0] + S.ks, repeat=3):
            cost = np.mean([combo[bin_of[j]] for j in train]) + S.m
            value = sum(bin_value(b, combo[b]) for b in range(3))
            if cost <= B + 1e-9 and (best is None or value > best + 1e-9):
                best = value
        if best is None:
            assert np.isnan(got)
            continue
        assert sum(bin_value(b, chosen[b]) for b in range(3)) == pytest.approx(best)
        assert np.mean([chosen[bin_of[j]] for j in train]) + S.m <= B + 1e-9
        assert spent == pytest.approx(np.mean([chosen[bin_of[i]] for i in test]) + S.m)
        want = [S.fallback[i] if chosen[bin_of[i]] == 0 else S.acc[i, max(range(2), key=lambda r: sum(
            S.acc[j, r, S.ks.index(chosen[bin_of[i]])] for j in train if bin_of[j] == bin_of[i])),
            S.ks.index(chosen[bin_of[i]])] for i in test]
        assert got == pytest.approx(np.mean(want))


def test_a_hopeless_bin_is_given_up():
    P, ks = 40, [1, 2, 4]
    acc = np.zeros((P, 1, 3))
    sig = np.r_[np.zeros(20), np.ones(20)]
    acc[20:] = np.array([0.5, 0.7, 0.9])     # the easy half gains from samples, the hard half never does
    S = al.Strategies(["majority"], ks, acc, np.zeros(P), 0)
    train = test = np.arange(P)
    got, spent, chosen = al.allocate_budget(S, sig, train, test, 2, 2)
    assert chosen == [0, 4] and spent == 2 and got == pytest.approx(0.45)
    uniform = al.single_best(S, train, test, 2)
    assert uniform == pytest.approx(0.35)


def simulated_world(P=200, n=32, seed=0):
    """Easy problems: the right answer in 70% of samples, wrong ones all different, a verifier that scores at
    random. Hard problems: 20% right, a systematic wrong answer, a verifier that knows. Majority wins the easy,
    the verifier the hard."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(P):
        easy = i % 2 == 0
        right = rng.random(n) < (0.7 if easy else 0.2)
        answers = ["1" if r else (f"w{rng.integers(10**6)}" if easy else "9") for r in right]
        scores = rng.random(n) if easy else right.astype(float) * 0.5 + 0.25
        out.append(PoolProblem(f"p{i}", answers, right.tolist(), [10] * n, scores={"v": scores.tolist()}))
    return out


def test_easy_and_hard_want_different_strategies_and_the_oracle_bins_find_it():
    ps = simulated_world()
    res = al.analyse(ps, ["v"], "v", [1, 2, 4, 8], al.Settings(m=2, n_bins=2, splits=10, replicates=40))
    f = res["figures"]
    # at k=8: majority ~1.0 on easy and ~0 on hard; argmax ~0.7 on easy and 1-0.8^8 ~ 0.83 on hard
    assert f["opt:oracle@8"]["mean"] > f["single@8"]["mean"] + 0.1
    assert f["opt:oracle@8"]["mean"] == pytest.approx(0.5 * 1.0 + 0.5 * (1 - 0.8**8), abs=0.05)
    assert f["ratio:oracle@8"]["mean"] != f["ratio:oracle@8"]["mean"] or f["ratio:oracle@8"]["mean"] > 1
    best = {(r["bin"], r["budget"]): r["best_rule"] for r in res["best_per_oracle_bin"]}
    assert best[(0, 8)] == "argmax:v" and best[(1, 8)] == "majority"
    # a verifier score over the first samples tells hard from easy here (hard scores are 0.25 or 0.75, easy
    # uniform), but agreement misleads: the hard problems agree on their wrong answer
    assert f["adaptive:oracle@8"]["lo"] <= f["adaptive:oracle@8"]["mean"] <= f["adaptive:oracle@8"]["hi"]
