"""Closed forms conditional on the pool (ESTIMATORS.md): flip_pool against brute force over every noise pattern and
every k-subset, scores_pool against Monte Carlo through the real noise mechanism, the bias of the population form at
c/n, and the power of the paired test (paired_agreement) against the old check (closed form inside the simultaneous
band). Expected values come from enumeration or simulation, never from the function under test. No server; fast."""
from functools import lru_cache
from itertools import combinations, product

import numpy as np
import pytest
from scipy import stats

from search.analysis import closed_forms as cf
from search.analysis import estimators as est
from search.tasks.arith import ArithTask
from verifiers.noise import ScoreNoise
from verifiers.oracle import OutcomeOracle


# --------------------------------------------------------------------------------------------- flip_pool, brute force

def _flip_brute_force(n, c, tpr, fpr, fp_cost):
    """Every label pattern of the n samples (with its probability) x the pool estimators of
    search.analysis.estimators, and, independently, x every k-subset with the selection rule applied by hand."""
    correct = np.array([True] * c + [False] * (n - c))
    ks = list(range(1, n + 1))
    est_sum = {key: np.zeros(n) for key in ("argmax", "accept", "abstain", "accept_reward")}
    hand_sum = {key: np.zeros(n) for key in est_sum}
    for pattern in product([False, True], repeat=n):
        acc = np.array(pattern)
        prob = np.prod(np.where(correct, np.where(acc, tpr, 1 - tpr), np.where(acc, fpr, 1 - fpr)))
        if prob == 0:
            continue
        # the estimators the runner uses: best_of_k_curve on 0/1 scores (ties uniform), binary_accept_at_k
        est_sum["argmax"] += prob * est.best_of_k_curve(acc.astype(float), correct.astype(float), ks)
        for i, k in enumerate(ks):
            a, r, z = est.binary_accept_at_k(acc, correct, k, cost=fp_cost)
            est_sum["accept"][i] += prob * a
            est_sum["accept_reward"][i] += prob * r
            est_sum["abstain"][i] += prob * z
        # the selection rules themselves, subset by subset
        for i, k in enumerate(ks):
            subsets = list(combinations(range(n), k))
            vals = np.zeros(4)
            for s in subsets:
                s = list(s)
                a_ok, a_bad = int((acc[s] & correct[s]).sum()), int((acc[s] & ~correct[s]).sum())
                if a_ok + a_bad:
                    vals += [a_ok / (a_ok + a_bad), a_ok / (a_ok + a_bad), 0.0,
                             (a_ok - fp_cost * a_bad) / (a_ok + a_bad)]
                else:
                    vals += [correct[s].mean(), 0.0, 1.0, 0.0]
            for key, v in zip(("argmax", "accept", "abstain", "accept_reward"), vals / len(subsets)):
                hand_sum[key][i] += prob * v
    return est_sum, hand_sum


@pytest.mark.parametrize("n, c, tpr, fpr, fp_cost", [
    (7, 3, 0.55, 0.15, 0.0),
    (7, 3, 0.8, 0.3, 1.0),
    (7, 5, 0.55, 0.15, 2.5),
    (6, 0, 0.7, 0.2, 1.0),       # no right sample
    (6, 6, 0.7, 0.2, 1.0),       # all right
    (6, 2, 1.0, 0.0, 1.0),       # exact verifier: argmax = accept = pass@k
    (6, 2, 1.0, 1.0, 1.0),       # accepts everything: a uniform pick, c/n
    (6, 4, 0.0, 0.3, 0.5),       # never accepts a right sample
])
def test_flip_pool_matches_brute_force(n, c, tpr, fpr, fp_cost):
    est_sum, hand_sum = _flip_brute_force(n, c, tpr, fpr, fp_cost)
    got = cf.flip_pool(n, c, tpr, fpr, list(range(1, n + 1)), fp_cost=fp_cost)
    assert set(got) == {"argmax", "accept", "abstain", "accept_reward"}
    for key in got:
        np.testing.assert_allclose(hand_sum[key], est_sum[key], rtol=0, atol=1e-12, err_msg=f"estimator {key}")
        np.testing.assert_allclose(got[key], est_sum[key], rtol=0, atol=1e-12, err_msg=key)


def test_flip_pool_at_k_equal_n_is_a_double_binomial_sum():
    # the single subset is the pool: E[A/(A+B) if A+B > 0 else c/n], A ~ Bin(c, TPR), B ~ Bin(n-c, FPR)
    n, c, tpr, fpr = 64, 9, 0.55, 0.05
    a, b = np.arange(c + 1)[:, None], np.arange(n - c + 1)[None, :]
    pab = stats.binom.pmf(a, c, tpr) * stats.binom.pmf(b, n - c, fpr)
    with np.errstate(invalid="ignore"):
        share = np.where(a + b > 0, a / (a + b), 0.0)
    got = cf.flip_pool(n, c, tpr, fpr, [n])
    assert got["accept"][0] == pytest.approx((pab * share).sum(), abs=1e-12)
    assert got["argmax"][0] == pytest.approx((pab * share).sum() + pab[0, 0] * c / n, abs=1e-12)
    assert got["abstain"][0] == pytest.approx(pab[0, 0], abs=1e-15)


def test_flip_pool_limits_and_arguments():
    ks = [1, 2, 4, 8, 16, 32, 64]
    exact = cf.flip_pool(64, 20, 1.0, 0.0, ks)            # TPR 1, FPR 0: pass@k, abstain = miss@k
    cover = [est.pass_at_k(64, 20, k) for k in ks]
    np.testing.assert_allclose(exact["argmax"], cover, atol=1e-13)
    np.testing.assert_allclose(exact["abstain"], 1 - np.array(cover), atol=1e-13)
    np.testing.assert_allclose(cf.flip_pool(64, 20, 0.9, 0.2, [1])["argmax"], [20 / 64], atol=1e-15)
    for bad in ([0], [65], [1.5]):
        with pytest.raises(ValueError):
            cf.flip_pool(64, 20, 0.9, 0.2, bad)
    with pytest.raises(ValueError):
        cf.flip_pool(64, 65, 0.9, 0.2, [1])
    with pytest.raises(ValueError):
        cf.flip_pool(64, 2, 1.1, 0.2, [1])


# ------------------------------------------------------------------------------------------- scores_pool, Monte Carlo

@pytest.mark.parametrize("params", [
    dict(mu_right=1.0, mu_wrong=0.0, sigma_right=1.0, sigma_wrong=2.0, eps=0.0),
    dict(mu_right=1.0, mu_wrong=0.0, sigma_right=1.0, sigma_wrong=2.0, eps=0.2),
])
def test_scores_pool_matches_monte_carlo(params):
    """Scores drawn through ScoreNoise.raw (the lab's own mechanism), the measured curve by best_of_k_curve."""
    n, c, ks, draws = 7, 3, [1, 3, 5, 7], 8000
    noise = ScoreNoise(OutcomeOracle(ArithTask()), **params)
    rng = np.random.default_rng(11)
    correct = np.array([1.0] * c + [0.0] * (n - c))
    u, v = rng.uniform(1e-12, 1 - 1e-12, size=(draws, n)), rng.random((draws, n))
    vals = np.empty((draws, len(ks)))
    for d in range(draws):
        raw = [noise.raw(bool(correct[i]), u[d, i], v[d, i]) for i in range(n)]
        vals[d] = est.best_of_k_curve(raw, correct, ks)
    mc, se = vals.mean(axis=0), vals.std(axis=0, ddof=1) / np.sqrt(draws)
    got = cf.scores_pool(n, c, ks, **params)["argmax"]
    assert got[0] == pytest.approx(c / n, abs=1e-12)        # k = 1: a uniform pick, no noise at all
    assert np.all(np.abs(got[1:] - mc[1:]) < 4 * se[1:]), (got, mc, se)


def test_scores_pool_point_masses_and_population_limit():
    ks = [1, 4, 16, 64]
    np.testing.assert_allclose(cf.scores_pool(64, 10, ks, sigma_right=0.0, sigma_wrong=0.0, eps=0.1)["argmax"],
                               cf.flip_pool(64, 10, 1.0, 0.1, ks)["argmax"], atol=1e-15)
    # a huge pool forgets that it is finite: the population form at p = c/n (within 1e-3 of it at k <= 64)
    big = cf.scores_pool(4096, 1229, ks, mu_right=1.5, sigma_wrong=1.6)["argmax"]
    np.testing.assert_allclose(big, cf.score_accuracy(1229 / 4096, ks, mu_right=1.5, sigma_wrong=1.6), atol=1e-3)


# ------------------------------------------------------------------------------------------------------- the bias

def test_population_form_at_c_over_n_is_biased_for_the_pool_estimate():
    """TPR 0.55, FPR 0.05, p = 0.03-0.10, n = k = 64: the population form at p = c/n against the exact
    expectation of the pool estimate (the double binomial sum at k = n, computed here by hand)."""
    n, tpr, fpr = 64, 0.55, 0.05
    gaps = []
    for c in range(2, 7):                                   # p = 0.031 .. 0.094
        a, b = np.arange(c + 1)[:, None], np.arange(n - c + 1)[None, :]
        pab = stats.binom.pmf(a, c, tpr) * stats.binom.pmf(b, n - c, fpr)
        with np.errstate(invalid="ignore"):
            pool_value = (pab * np.where(a + b > 0, a / (a + b), c / n)).sum()
        assert cf.flip_pool(n, c, tpr, fpr, [n])["argmax"][0] == pytest.approx(pool_value, abs=1e-12)
        gaps.append(cf.flip_accuracy(c / n, tpr, fpr, [n], abstain=False)[0] - pool_value)
    gaps = np.array(gaps)
    # about -0.027 at c = 2..4, -0.021 at c = 6; mean -0.025
    assert -0.03 < gaps.mean() < -0.02 and np.all(gaps < -0.02) and np.all(gaps > -0.03), gaps


# --------------------------------------------------------------------------------------------- paired_agreement

def test_paired_agreement_mechanics():
    rng = np.random.default_rng(0)
    pred = rng.random((50, 4))
    meas = pred.copy()
    meas[:, 1] += rng.normal(0, 0.1, 50)
    meas[:, 2] += 0.01 + rng.normal(0, 0.01, 50)
    meas[:, 3] += 0.02                                     # every problem off by the same amount
    r = cf.paired_agreement(meas, pred)
    d = meas - pred
    assert r["t"][0] == 0 and r["p"][0] == 1 and r["se"][0] == 0           # constant zero column
    assert r["t"][1] == pytest.approx(stats.ttest_1samp(d[:, 1], 0).statistic)
    assert r["p"][2] == pytest.approx(stats.ttest_1samp(d[:, 2], 0).pvalue)
    assert np.isinf(r["t"][3]) and r["p"][3] == 0 and r["p_joint"] == 1 / 5000
    ok = cf.paired_agreement(meas[:, :2], pred[:, :2])
    assert ok["p_joint"] > 0.05 and ok["n_flips"] == 4999
    assert cf.paired_agreement(pred, pred)["p_joint"] == 1.0
    small = cf.paired_agreement(meas[:8, 1:3], pred[:8, 1:3])              # 2^8 <= n_flips: every sign pattern
    assert small["n_flips"] == 256 and small["p_joint"] >= 1 / 257
    assert cf.paired_agreement(meas, pred, seed=3)["p"].tolist() == r["p"].tolist()


# ------------------------------------------------------------------------------------------------------- power

N, KS, P_PROBLEMS, TPR, FPR = 64, [1, 2, 4, 8, 16, 32, 64], 200, 0.9, 0.2
SEEDS = range(20)


@lru_cache(maxsize=None)
def _pool_form(c: int, fpr: float) -> np.ndarray:
    return cf.flip_pool(N, c, TPR, fpr, KS)["argmax"]


@lru_cache(maxsize=None)
def _simulate(seed: int):
    """200 problems, p ~ Beta(1.2, 1), pools of 64, flip noise drawn per candidate; the measured argmax curve of
    each problem by best_of_k_curve (0/1 scores, ties uniform), and each problem's c."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 1.0, P_PROBLEMS)
    measured, cs = np.empty((P_PROBLEMS, len(KS))), np.empty(P_PROBLEMS, dtype=int)
    for i in range(P_PROBLEMS):
        correct = rng.random(N) < p[i]
        accepted = np.where(correct, rng.random(N) < TPR, rng.random(N) < FPR)
        measured[i] = est.best_of_k_curve(accepted.astype(float), correct.astype(float), KS)
        cs[i] = correct.sum()
    return measured, cs


def _paired_p(seed: int, fpr: float) -> float:
    measured, cs = _simulate(seed)
    return cf.paired_agreement(measured, np.array([_pool_form(int(c), fpr) for c in cs]))["p_joint"]


def _old_check_detects(seed: int, fpr: float) -> bool:
    """The old check: the population form at each problem's c/n, averaged over problems, outside the measured
    curve's simultaneous 95% band at some k."""
    measured, cs = _simulate(seed)
    lo, hi = est.simultaneous_band(measured)
    closed = np.mean([cf.flip_accuracy(c / N, TPR, fpr, KS, abstain=False) for c in cs], axis=0)
    return not bool(((closed >= lo - 1e-12) & (closed <= hi + 1e-12)).all())


def test_paired_test_holds_its_level_with_the_right_noise():
    ps = np.array([_paired_p(s, FPR) for s in SEEDS])
    # observed: 1 of 20 below 0.05 (on 100 further seeds, 4% below 0.05 and 1% below 0.01)
    assert (ps < 0.05).sum() <= 3, ps


def test_paired_test_detects_a_small_fpr_error_the_band_check_misses():
    p22 = np.array([_paired_p(s, 0.22) for s in SEEDS])
    p24 = np.array([_paired_p(s, 0.24) for s in SEEDS])
    old22 = [_old_check_detects(s, 0.22) for s in SEEDS]
    old24 = [_old_check_detects(s, 0.24) for s in SEEDS]
    # FPR off by 0.02: the paired test is at p < 0.01 in 12 of these 20 seeds (17 of 20 at p < 0.05; 74 of 100
    # further seeds at p < 0.01), NOT in every seed; the band check never notices (0 of 20; 0 of 100).
    assert (p22 < 0.01).sum() >= 10 and (p22 < 0.05).sum() >= 15, p22
    assert sum(old22) == 0
    # FPR off by 0.04: the paired test rejects in every seed, the band check still misses it in most (9% detect on
    # 100 further seeds).
    assert (p24 < 0.01).all(), p24
    assert sum(old24) <= 5, old24


def _brute_p_joint(d: np.ndarray) -> float:
    """The joint sign-flip p-value by its definition: every one of the 2^P sign patterns of whole rows, max |t| over
    the columns that are not all zero, written out without the code under test."""
    import itertools

    P = d.shape[0]
    live = ~(np.abs(d) <= 1e-12).all(axis=0)

    def max_t(rows):
        mean, se = rows.mean(axis=0), rows.std(axis=0, ddof=1) / np.sqrt(P)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 0, np.abs(mean) / se, np.where(np.abs(mean) > 0, np.inf, 0.0))
        return t[live].max()

    observed = max_t(d)
    hits = sum(max_t(d * np.array(s)[:, None]) >= observed * (1 - 1e-12)
               for s in itertools.product((1.0, -1.0), repeat=P))
    return (1 + hits) / (1 + 2 ** P)


def test_paired_agreement_joint_p_against_every_sign_pattern_by_hand():
    rng = np.random.default_rng(7)
    for P, shift in ((5, 0.0), (7, 0.3), (9, 0.05)):
        pred = rng.random((P, 3))
        meas = pred + shift + rng.normal(0, 0.2, (P, 3))
        meas[:, 0] = pred[:, 0] + 1e-14                          # within atol: no information, left out
        r = cf.paired_agreement(meas, pred)
        assert r["n_flips"] == 2 ** P and r["n_problems"] == P
        assert r["p_joint"] == pytest.approx(_brute_p_joint(meas - pred), abs=1e-12)
        assert r["t"][0] == 0 and r["p"][0] == 1 and r["mean_diff"][0] == 0
        d = meas[:, 1] - pred[:, 1]
        assert r["se"][1] == pytest.approx(d.std(ddof=1) / np.sqrt(P))
        assert r["max_abs_t"] == pytest.approx(np.abs(r["t"][1:]).max())
    # above 2^P > n_flips: Monte Carlo over sign patterns, close to the exact value and reproducible by its seed
    pred = rng.random((12, 2))
    meas = pred + 0.05 + rng.normal(0, 0.2, (12, 2))
    exact = _brute_p_joint(meas - pred)
    mc = cf.paired_agreement(meas, pred, n_flips=2000, seed=1)
    assert mc["n_flips"] == 2000 and abs(mc["p_joint"] - exact) < 4 * np.sqrt(exact * (1 - exact) / 2000) + 1e-3
    assert cf.paired_agreement(meas, pred, n_flips=2000, seed=1)["p_joint"] == mc["p_joint"]
    assert cf.paired_agreement(meas, pred, n_flips=4096)["n_flips"] == 4096        # 2^12 <= 4096: exhaustive
    assert cf.paired_agreement(meas, pred, n_flips=4096)["p_joint"] == pytest.approx(exact, abs=1e-12)


def test_paired_agreement_inputs_and_signs():
    one_d = cf.paired_agreement([0.5, 0.6, 0.7, 0.9], [0.4, 0.6, 0.5, 0.6])
    two_d = cf.paired_agreement([[0.5], [0.6], [0.7], [0.9]], [[0.4], [0.6], [0.5], [0.6]])
    assert one_d["t"].tolist() == two_d["t"].tolist() and one_d["p_joint"] == two_d["p_joint"]
    below = cf.paired_agreement(np.zeros((6, 1)), np.full((6, 1), 0.1))           # every problem 0.1 under
    assert below["t"][0] == -np.inf and below["p"][0] == 0 and below["mean_diff"][0] == pytest.approx(-0.1)
    assert below["p_joint"] == (1 + 2) / (1 + 64)      # all 64 patterns: only +1 everywhere and -1 everywhere stay
                                                       # constant (|t| = inf)
    with pytest.raises(ValueError, match=r"same shape .* got \(3, 2\) and \(3, 1\)"):
        cf.paired_agreement(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="at least 2 problems"):
        cf.paired_agreement(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="finite"):
        cf.paired_agreement([0.1, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        cf.paired_agreement([0.1, 0.2], [np.inf, 0.2])
