"""Small rules that every number leans on, each pinned against a value worked out by hand or by simulation: the
Gaussian closed form with its default and point-mass arguments, the logistic squashing of noisy scores, the accept
rate of a Gaussian score, the one-line error text, and the cache's file handling. Mutation testing (docs/testing.md)
found each of these unguarded."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from search.analysis.closed_forms import score_accuracy
from search.contracts import Candidate, Generation, Completion, Usage
from search.ledger import one_line
from search.serving.cache import GenerationCache
from search.tasks.arith import ArithTask
from verifiers.noise import ScoreNoise, _above_zero
from verifiers.oracle import OutcomeOracle

TASK = ArithTask()


def simulate_argmax(p, k, mu_right=1.0, mu_wrong=0.0, sigma_right=1.0, sigma_wrong=1.0, eps=0.0, n=200_000, seed=0):
    """Monte Carlo of the argmax of k scores: right ones N(mu_right, sigma_right), wrong ones N(mu_wrong, sigma_wrong)
    except a fraction eps scored like right ones."""
    rng = np.random.default_rng(seed)
    right = rng.random((n, k)) < p
    like_right = right | (rng.random((n, k)) < eps)
    z = rng.standard_normal((n, k))
    s = np.where(like_right, mu_right + sigma_right * z, mu_wrong + sigma_wrong * z)
    return right[np.arange(n), s.argmax(axis=1)].mean()


def test_gaussian_argmax_with_default_arguments_matches_simulation():
    got = score_accuracy(0.3, [1, 4, 16])                      # N(1, 1) right against N(0, 1) wrong
    for value, k in zip(got, [1, 4, 16]):
        assert value == pytest.approx(simulate_argmax(0.3, k), abs=0.005), k


def test_gaussian_argmax_with_unequal_spreads_and_contamination_matches_simulation():
    got = score_accuracy(0.2, [2, 8], mu_right=0.5, sigma_right=0.5, sigma_wrong=2.0, eps=0.1)
    want = [simulate_argmax(0.2, k, mu_right=0.5, sigma_right=0.5, sigma_wrong=2.0, eps=0.1) for k in (2, 8)]
    assert got == pytest.approx(want, abs=0.005)


def test_gaussian_point_masses_are_ties_broken_uniformly():
    """Both sigmas 0: every right sample and every contaminated wrong one score mu_right, the rest mu_wrong below
    it; ties are broken uniformly. p = 0.5, eps = 0.5: a sample is right (0.5), contaminated wrong (0.25) or plain
    wrong (0.25). k = 1 gives 0.5; k = 2 by cases below gives 0.625."""
    got = score_accuracy(0.5, [1, 2], sigma_right=0.0, sigma_wrong=0.0, eps=0.5)
    # k = 2: two right 0.25 -> 1; right with contaminated 0.25 -> 1/2; right with plain 0.25 -> 1; no right -> 0
    assert got == pytest.approx([0.5, 0.25 + 0.25 / 2 + 0.25], abs=1e-12)
    with pytest.raises(ValueError, match="both sigmas"):
        score_accuracy(0.5, [1], sigma_right=0.0, sigma_wrong=1.0)


def test_a_point_mass_is_above_zero_exactly_when_its_mean_is():
    assert _above_zero(0.0, 0.0) == 1.0 and _above_zero(0.5, 0.0) == 1.0 and _above_zero(-0.1, 0.0) == 0.0
    assert _above_zero(0.0, 1.0) == pytest.approx(0.5) and _above_zero(1.0, 1.0) == pytest.approx(0.8413447, abs=1e-6)


@pytest.mark.parametrize("mu, want", [(0.0, 0.5), (2.0, 1 / (1 + math.exp(-2.0))), (-1.0, 1 / (1 + math.e)),
                                      (29.5, 1 / (1 + math.exp(-29.5))), (40.0, 1 - 1e-13), (-40.0, 1e-13)])
def test_noisy_scores_are_the_logistic_of_the_raw_score(mu, want):
    """sigma 0 makes the raw score exactly mu; beyond |x| = 30 the logistic would round to 0 or 1 and create false
    ties, so it is held 1e-13 inside."""
    noise = ScoreNoise(OutcomeOracle(TASK), mu_right=mu, mu_wrong=mu, sigma_right=0.0, sigma_wrong=0.0)
    problem = TASK._make(1, (("+", 1),))
    cand = Candidate(steps=("1+1=2", "A:2"), answer="2", text="1+1=2\nA:2", prompt_tokens=1, completion_tokens=1,
                     finish_reason="stop")
    [score] = noise.score(problem, [cand]).final
    assert score == want and 0 < score < 1


def test_an_error_line_is_one_line_and_cut_at_its_limit():
    assert one_line(ValueError("a\n  b\tc")) == "a b c" and one_line(ValueError("")) == "(no message)"
    assert one_line("x" * 10, limit=10) == "x" * 10
    assert one_line("x" * 11, limit=10) == "x" * 7 + "..."


def test_the_cache_makes_its_directory_and_serves_every_thread(tmp_path):
    cache = GenerationCache(tmp_path / "a" / "b" / "c.sqlite")            # parents made
    gen = Generation((Completion("A:1", 2, "stop"),), Usage(3, 0, 2))
    errors = []

    def put(i):
        try:
            cache.put_many({f"k{i}": gen}, "m@1")
        except Exception as err:                                           # noqa: BLE001 - collected for the assert
            errors.append(err)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 4
    cache.put_many({"k0": gen}, "m@1")                                     # a key already there is left as it is
    assert len(cache) == 4


def simulate_pool_argmax(n, c, k, mu_right=1.0, mu_wrong=0.0, sigma_right=1.0, sigma_wrong=1.0, eps=0.0,
                         draws=200_000, seed=1):
    """Monte Carlo of argmax over random k-subsets of a fixed pool (c right of n) with fresh score noise."""
    rng = np.random.default_rng(seed)
    right = np.arange(n) < c
    idx = np.argsort(rng.random((draws, n)), axis=1)[:, :k]
    r = right[idx]
    like_right = r | (rng.random((draws, k)) < eps)
    z = rng.standard_normal((draws, k))
    s = np.where(like_right, mu_right + sigma_right * z, mu_wrong + sigma_wrong * z)
    return r[np.arange(draws), s.argmax(axis=1)].mean()


@pytest.mark.parametrize("knobs", [{}, {"sigma_right": 2.0, "sigma_wrong": 0.5, "mu_right": 0.5},
                                   {"sigma_wrong": 3.0, "eps": 0.2}])
def test_gaussian_argmax_given_the_pool_matches_simulation(knobs):
    from search.analysis.closed_forms import scores_pool

    got = scores_pool(8, 3, [1, 3, 8], **knobs)["argmax"]
    want = [simulate_pool_argmax(8, 3, k, **knobs) for k in (1, 3, 8)]
    assert got == pytest.approx(want, abs=0.005)


def test_gaussian_argmax_given_the_pool_edges():
    from search.analysis.closed_forms import scores_pool

    assert list(scores_pool(8, 0, [1, 4])["argmax"]) == [0.0, 0.0]                 # nothing right to pick
    assert list(scores_pool(8, 8, [1, 4])["argmax"]) == pytest.approx([1.0, 1.0])  # nothing wrong
    with pytest.raises(ValueError, match="point-mass scores need mu_right > mu_wrong"):
        scores_pool(8, 3, [1], mu_right=0.0, mu_wrong=0.0, sigma_right=0.0, sigma_wrong=0.0)
    with pytest.raises(ValueError, match="both sigmas > 0, or both 0"):
        scores_pool(8, 3, [1], sigma_wrong=0.0)
    with pytest.raises(ValueError, match=r"sigmas >= 0 and eps in \[0, 1\]"):
        scores_pool(8, 3, [1], eps=1.5)
    # point masses with eps = 0: the right samples always win a subset that has one, i.e. pass@k of the pool
    assert scores_pool(4, 1, [2], sigma_right=0.0, sigma_wrong=0.0)["argmax"] == pytest.approx([0.5])


def test_the_bootstrap_interval_has_its_percentile_bounds():
    """400 normal values: the bootstrap distribution of the mean is close to N(mean, se^2), so the 95% interval's
    ends are mean -/+ 1.96 se (a bound at another quantile, say 1/3 of the tail mass, is 9% further out)."""
    from search.analysis.estimators import bootstrap_ci, bootstrap_ci_matrix

    x = np.random.default_rng(3).normal(size=400)
    se = x.std(ddof=0) / np.sqrt(400)
    lo, hi = bootstrap_ci(x, n_resamples=20_000, seed=0)
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.03 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.03 * se)
    lo90, hi90 = bootstrap_ci(x, n_resamples=20_000, level=0.9, seed=0)
    assert hi90 - lo90 == pytest.approx(2 * 1.645 * se, rel=0.03)
    # a constant column is its own interval exactly (the mean of seven 0.1s is 0.09999999999999999)
    col = np.column_stack([np.full(7, 0.1), np.arange(7.0)])
    lo, hi = bootstrap_ci_matrix(col, n_resamples=50, seed=0)
    assert lo[0] == hi[0] == 0.1 and lo[1] < 3.0 < hi[1]
    assert bootstrap_ci(x, n_resamples=1, seed=0)[0] == bootstrap_ci(x, n_resamples=1, seed=0)[1]
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
            bootstrap_ci(x, level=bad)
    with pytest.raises(ValueError, match="values must be finite"):
        bootstrap_ci_matrix(np.array([[0.1], [np.nan]]))
