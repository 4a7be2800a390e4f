"""Early stopping on a pool: the vectorised rules against a plain one-ordering-at-a-time implementation on every
ordering of small pools, the fixed rule against the exact majority estimator, Monte Carlo against enumeration, and
the Beta criterion against scipy."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from search.analysis import early_stopping as es
from search.analysis.estimators import majority_at_k


def plurality_credit(weights: dict, good: dict) -> float:
    if not weights or max(weights.values()) <= 0:
        return 0.0
    top = max(weights.values())
    lead = [a for a, w in weights.items() if w >= top - 1e-12 and w > 0]
    return sum(good[a] for a in lead) / len(lead)


def slow(rule, answers, correct, order, tokens, scores):
    """One ordering, written the obvious way."""
    good = {a: ok for a, ok in zip(answers, correct)}
    counts, weights = {}, {}
    best, best_ok = -math.inf, []
    for t, i in enumerate(order[:rule.max_samples], 1):
        a = answers[i]
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
            if scores is not None:
                weights[a] = weights.get(a, 0.0) + scores[i]
        last = t == rule.max_samples
        used = sum(tokens[j] for j in order[:t])
        if rule.kind == "fixed" and last:
            return plurality_credit(counts, good), t, used
        if rule.kind == "adaptive":
            v = sorted(counts.values(), reverse=True) + [0, 0]
            p = stats.beta.sf(0.5, v[0] + 1, v[1] + 1)
            if (p >= rule.threshold - 1e-12 and t >= rule.min_samples) or last:
                return plurality_credit(counts, good), t, used
        if rule.kind == "esc":
            win = [answers[j] for j in order[t - rule.window:t]] if t % rule.window == 0 else []
            if (win and win[0] is not None and len(set(win)) == 1) or last:
                return plurality_credit(counts, good), t, used
        if rule.kind == "confident":
            ok = float(bool(a is not None and good[a]))
            if scores[i] > best:
                best, best_ok = scores[i], [ok]
            elif scores[i] == best:
                best_ok.append(ok)
            if scores[i] >= rule.threshold:
                return ok, t, used
            if last:
                return sum(best_ok) / len(best_ok), t, used
        if rule.kind == "consensus":
            total = sum(weights.values())
            share = max(weights.values()) / total if total > 0 else 0.0
            if (total > 0 and share >= rule.threshold and t >= rule.min_samples) or last:
                return (plurality_credit(weights, good) if total > 0 else plurality_credit(counts, good)), t, used
    raise AssertionError("the rule never answered")


POOLS = [
    (["1", "2", "1", None, "3", "1"], [True, False, True, False, False, True]),
    (["2", "2", "2", "1", "1", "3", None], [False, False, False, True, True, False, False]),
    (["5", "5", "6", "6"], [False, False, True, True]),
    ([None, None, "4", "4", "9"], [False, False, True, True, False]),
    ([None, None, None], [False, False, False]),
]
RULES = [es.StopRule("fixed", 3), es.StopRule("adaptive", 5, threshold=0.8), es.StopRule("adaptive", 4, 0.7, 0, 2),
         es.StopRule("esc", 6, window=2), es.StopRule("esc", 5, window=3), es.StopRule("esc", 3, window=2),
         es.StopRule("confident", 4, 0.7),
         es.StopRule("consensus", 5, threshold=0.6, min_samples=2), es.StopRule("consensus", 3, threshold=0.9)]


CASES = [(rule, pool) for rule in RULES for pool in range(len(POOLS)) if rule.max_samples <= len(POOLS[pool][0])]


@pytest.mark.parametrize("rule, pool", CASES, ids=[f"{r.label}-pool{p}" for r, p in CASES])
def test_every_ordering_matches_the_plain_implementation(rule, pool):
    answers, correct = POOLS[pool]
    n = len(answers)
    rng = np.random.default_rng(pool)
    tokens = rng.integers(1, 30, size=n).tolist()
    scores = np.round(rng.random(n), 1).tolist()       # rounded: ties in score happen
    orders = np.array(list(itertools.permutations(range(n))))
    credit, used, tok = es.evaluate_orders(rule, answers, correct, orders, tokens, scores)
    want = np.array([slow(rule, answers, correct, o, tokens, scores) for o in orders])
    np.testing.assert_allclose(credit, want[:, 0], atol=1e-12)
    np.testing.assert_array_equal(used, want[:, 1])
    np.testing.assert_allclose(tok, want[:, 2])


@pytest.mark.parametrize("pool", range(len(POOLS)))
def test_fixed_k_is_the_exact_majority_estimator(pool):
    answers, correct = POOLS[pool]
    for k in range(1, len(answers) + 1):
        got = es.exact(es.StopRule("fixed", k), answers, correct)
        assert got["accuracy"] == pytest.approx(majority_at_k(answers, correct, k), abs=1e-12)
        assert got["samples"] == k


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.label)
def test_monte_carlo_agrees_with_enumeration(rule):
    answers, correct = POOLS[1]
    tokens, scores = list(range(3, 10)), [0.9, 0.2, 0.75, 0.6, 0.1, 0.5, 0.3]
    ex = es.exact(rule, answers, correct, tokens, scores)
    mc = es.monte_carlo(rule, answers, correct, tokens, scores, draws=20000, seed=5)
    assert abs(mc["accuracy"] - ex["accuracy"]) < 4.5 * mc["credit_se"] + 1e-9
    assert mc["samples"] == pytest.approx(ex["samples"], rel=0.03)
    assert mc["tokens"] == pytest.approx(ex["tokens"], rel=0.03)


def test_beta_criterion_is_the_beta_posterior():
    v1, v2 = np.meshgrid(np.arange(0, 40), np.arange(0, 40))
    got = es.beta_stop_probability(v1, v2)
    np.testing.assert_allclose(got, stats.beta.sf(0.5, v1 + 1, v2 + 1), atol=1e-10)


def test_stopping_saves_samples_where_answers_agree():
    answers, correct = ["7"] * 8, [True] * 8
    assert es.exact(es.StopRule("adaptive", 8, threshold=0.9), answers, correct)["samples"] == 3  # 1-(1/2)^(3+1) >= .9
    assert es.exact(es.StopRule("esc", 8, window=3), answers, correct)["samples"] == 3
    # on a split pool the adaptive rule spends more than on a unanimous one
    split = es.exact(es.StopRule("adaptive", 8, threshold=0.9), ["1", "2"] * 4, [True, False] * 4)
    assert split["samples"] > 4 and split["accuracy"] == pytest.approx(0.5)
