"""The vectorised per-k evaluation against a plain per-k loop: the same numbers, to the last bit.

``evaluate_pool`` evaluates every budget at once and the weighted vote reuses one set of draws for every k. The
reference below is the slow way the lab used to do it, kept here and not in the product: one estimator call per k,
and for the weighted vote a fresh generator per k drawing the same seeded (n_draws, n) keys, the k-subset of a draw
taken by ``argpartition`` and its votes added up sample by sample in Python. Random pools include score ties, None
answers, negative and zero weights, pools where nothing is right, and the budgets k = 1 and k = n.
"""
from __future__ import annotations

import numpy as np
import pytest

from search.analysis import estimators
from search.analysis.pool import ACCEPT_THRESHOLD, evaluate_pool
from search.ledger import policy_flops, verifier_flops


def reference_weighted(answers, weights, correct, k, n_draws, seed):
    """The weighted vote at one k, draw by draw: subsets from argpartition of the seeded keys, votes by hand."""
    n = len(answers)
    right = {a for a, ok in zip(answers, correct) if ok and a is not None}
    if not right:
        return 0.0, 0.0
    tol = 1e-12 * max(1.0, float(np.abs(np.asarray(weights, dtype=float)).sum()))

    def value(subset):
        votes = {}
        for i in subset:
            if answers[i] is not None:
                votes[answers[i]] = votes.get(answers[i], 0.0) + float(weights[i])
        if not votes:
            return 0.0
        top = max(votes.values())
        tied = [a for a, v in votes.items() if v >= top - tol]
        return sum(a in right for a in tied) / len(tied)

    if k == n:
        return value(range(n)), 0.0
    keys = np.random.default_rng(seed).random((n_draws, n))
    v = np.array([value(row) for row in np.argpartition(keys, k - 1, axis=1)[:, :k].tolist()])
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(n_draws)) if n_draws > 1 else float("nan")


def reference_pool(answers, correct, scores, ks, *, prompt_tokens, completion_tokens, verifier_tokens,
                   policy_params, verifier_params, fp_cost, weighted_draws, seed):
    """evaluate_pool written as one estimator call per budget k (the weighted vote drawn afresh for each)."""
    n = len(answers)
    rewards = [1.0 if x else 0.0 for x in correct]
    accepted = [s >= ACCEPT_THRESHOLD for s in scores]
    out = {key: [] for key in ("k", "coverage", "argmax", "majority", "weighted", "weighted_mc_se", "accept",
                               "accept_reward", "abstain", "false_positive", "policy_tokens", "verifier_tokens",
                               "flops")}
    mean_completion, mean_verifier = float(np.mean(completion_tokens)), verifier_tokens / n
    # best-of-k and majority were whole-curve estimators before the vectorisation too (a curve's matrix product
    # may round differently from one k's), so the reference calls them as the lab always did
    out["argmax"] = [float(x) for x in estimators.best_of_k_curve(scores, rewards, ks)]
    out["majority"] = [float(x) for x in estimators.majority_curve(answers, correct, ks)]
    for k in ks:
        out["k"].append(k)
        out["coverage"].append(estimators.pass_at_k(n, sum(correct), k))
        w, se = reference_weighted(answers, scores, correct, k, weighted_draws, seed)
        out["weighted"].append(w)
        out["weighted_mc_se"].append(se)
        a, r, z = estimators.binary_accept_at_k(accepted, correct, k, fp_cost)
        out["accept"].append(a)
        out["accept_reward"].append(r)
        out["abstain"].append(z)
        out["false_positive"].append(1.0 - a - z)
        out["policy_tokens"].append(prompt_tokens + k * mean_completion)
        out["verifier_tokens"].append(k * mean_verifier)
        out["flops"].append(policy_flops(policy_params, prompt_tokens, k * mean_completion)
                            + verifier_flops(verifier_params, k * mean_verifier))
    return out


def random_pool(rng, n):
    """A pool with few distinct answers (ties in the vote), some None, and scores of one of three kinds: 0/1 flips
    (many exact ties), a few repeated values, or continuous values of both signs (sums that round)."""
    labels = ["1", "2", "3", "4", "5"][: rng.integers(1, 6)]
    answers = [None if rng.random() < 0.15 else labels[rng.integers(len(labels))] for _ in range(n)]
    right = set(rng.choice(labels, size=rng.integers(0, 2), replace=False).tolist())
    correct = [a in right for a in answers]
    kind = rng.integers(3)
    if kind == 0:
        scores = rng.integers(0, 2, n).astype(float)
    elif kind == 1:
        scores = rng.choice([0.1, 0.2, 0.3, 0.5, 0.7], n)
    else:
        scores = rng.normal(0.3, 0.6, n)
    return answers, correct, scores.tolist()


@pytest.mark.parametrize("case", range(40))
def test_evaluate_pool_equals_the_per_k_loop(case):
    rng = np.random.default_rng(1000 + case)
    n = int(rng.integers(1, 40))
    answers, correct, scores = random_pool(rng, n)
    ks = sorted({1, n} | set(rng.integers(1, n + 1, size=rng.integers(0, 6)).tolist()))
    kw = dict(prompt_tokens=int(rng.integers(1, 50)), completion_tokens=rng.integers(1, 30, n).tolist(),
              verifier_tokens=int(rng.integers(0, 500)), policy_params=1000, verifier_params=300,
              fp_cost=float(rng.choice([0.0, 0.5, 2.0])), weighted_draws=int(rng.choice([1, 2, 37, 300])),
              seed=int(rng.integers(2**31)))
    got = evaluate_pool(answers, correct, scores, ks, **kw)
    want = reference_pool(answers, correct, scores, ks, **kw)
    assert got.keys() == want.keys()
    for key in want:
        # nan (one draw has no standard error) is the only value allowed to differ from itself
        assert np.array_equal(got[key], want[key], equal_nan=True), (key, got[key], want[key])


@pytest.mark.parametrize("case", range(15))
def test_weighted_curve_reuses_the_draws_of_each_k(case):
    """Budgets asked in any order and together give what each asked alone gives, and what the reference gives;
    draws spanning several chunks of the loop read the seeded stream as one draw."""
    rng = np.random.default_rng(case)
    n = int(rng.integers(2, 70))
    answers, correct, scores = random_pool(rng, n)
    ks = rng.permutation(np.unique(rng.integers(1, n + 1, size=5))).tolist() + [n, 1]
    draws = int(rng.choice([50, 1500]))
    est, se = estimators.weighted_vote_curve(answers, scores, correct, ks, n_draws=draws, seed=case)
    for i, k in enumerate(ks):
        alone = estimators.weighted_vote_at_k(answers, scores, correct, k, n_draws=draws, seed=case)
        assert (est[i], se[i]) == alone == reference_weighted(answers, scores, correct, k, draws, case)


def test_weighted_curve_draws_in_chunks(monkeypatch):
    """A chunk of one draw at a time (the loop's smallest) changes no number."""
    rng = np.random.default_rng(7)
    answers, correct, scores = random_pool(rng, 30)
    correct[0], answers[0] = True, "9"
    whole = estimators.weighted_vote_curve(answers, scores, correct, [1, 5, 29, 30], n_draws=40, seed=3)
    monkeypatch.setattr(estimators, "_CHUNK", 1)
    chunked = estimators.weighted_vote_curve(answers, scores, correct, [1, 5, 29, 30], n_draws=40, seed=3)
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])


def test_weighted_curve_builds_the_draws_of_one_pool_once_for_every_weighting():
    """A noise sweep scores the same pools again with other weights: the random subsets and where each sample's
    vote lands depend only on the answers, the budgets, the draws and the seed, so from their second use they are
    kept and reused; every number equals what a cold computation gives, bit for bit."""
    rng = np.random.default_rng(11)
    answers, correct, scores = random_pool(rng, 40)
    correct[0], answers[0] = True, "9"
    ks = [1, 4, 16, 40]
    layouts = estimators.VOTE_LAYOUTS
    layouts.clear()
    weights = [scores] + [rng.normal(size=40).tolist() for _ in range(3)]
    warm = [estimators.weighted_vote_curve(answers, w, correct, ks, n_draws=300, seed=5) for w in weights]
    assert (layouts.hits, layouts.misses, len(layouts)) == (2, 2, 1)     # built twice, kept from the second
    for w, got in zip(weights, warm):
        layouts.clear()
        cold = estimators.weighted_vote_curve(answers, w, correct, ks, n_draws=300, seed=5)
        assert np.array_equal(got[0], cold[0]) and np.array_equal(got[1], cold[1])
    assert not np.array_equal(warm[0][0], warm[1][0])      # the weights did change the vote
    # another seed, other draws, other answers or budgets: each its own layout
    layouts.clear()
    for _ in range(2):
        estimators.weighted_vote_curve(answers, scores, correct, ks, n_draws=300, seed=6)
        estimators.weighted_vote_curve(answers, scores, correct, ks, n_draws=301, seed=5)
        estimators.weighted_vote_curve(answers[::-1], scores, correct[::-1], ks, n_draws=300, seed=5)
        estimators.weighted_vote_curve(answers, scores, correct, [2, 40], n_draws=300, seed=5)
    assert (layouts.hits, layouts.misses, len(layouts)) == (0, 8, 4)


def test_one_pass_over_many_pools_keeps_no_draws():
    """A single run sees each pool once: nothing is kept (its peak memory is what it was without the reuse)."""
    rng = np.random.default_rng(13)
    layouts = estimators.VOTE_LAYOUTS
    layouts.clear()
    for seed in range(20):
        answers, correct, scores = random_pool(rng, 50)
        correct[0], answers[0] = True, "9"
        estimators.weighted_vote_curve(answers, scores, correct, [1, 8, 50], n_draws=100, seed=seed)
    assert len(layouts) == 0 and layouts.nbytes == 0 and layouts.misses == 20


def test_the_vote_layouts_stay_within_their_memory_bound(monkeypatch):
    """The layouts kept are bounded in bytes (least recently used go first); a layout above the bound is used
    and not kept. Numbers are the same whatever was kept."""
    rng = np.random.default_rng(12)
    answers, correct, scores = random_pool(rng, 30)
    correct[0], answers[0] = True, "9"
    layouts = estimators.VOTE_LAYOUTS
    layouts.clear()

    def curves():
        return [estimators.weighted_vote_curve(answers, scores, correct, [1, 8, 30], n_draws=200, seed=seed)
                for seed in range(4)]

    want = curves()
    curves()
    assert len(layouts) == 4
    one = layouts.nbytes / 4                                # four layouts of the same shape
    monkeypatch.setattr(layouts, "max_bytes", int(2.5 * one))
    layouts.clear()
    curves()
    got = curves()
    assert layouts.nbytes <= layouts.max_bytes and len(layouts) == 2
    assert all(np.array_equal(g[0], w[0]) and np.array_equal(g[1], w[1]) for g, w in zip(got, want))
    monkeypatch.setattr(layouts, "max_bytes", 10)
    layouts.clear()
    curves()
    assert all(np.array_equal(g[0], w[0]) for g, w in zip(curves(), want))
    assert len(layouts) == 0 and layouts.nbytes == 0
