"""The matched noise of a measured verifier, checked against simulation (no server)."""
import numpy as np
import pytest

from search.analysis import estimators
from search.analysis.verifier_metrics import matched_scores


def gaussian_verifier_pools(n_problems=300, n=64, mu=1.0, sigma_right=1.0, sigma_wrong=1.0, seed=0):
    """Per problem a pool of n samples right with probability p ~ U(0.05, 0.3); logit scores right ~ N(mu, s_r^2),
    wrong ~ N(0, s_w^2), plus a per-problem offset N(0, 3^2) that argmax cannot use."""
    rng = np.random.default_rng(seed)
    scores, labels, groups, pools = [], [], [], []
    for i in range(n_problems):
        y = rng.random(n) < rng.uniform(0.05, 0.3)
        x = np.where(y, rng.normal(mu, sigma_right, n), rng.normal(0, sigma_wrong, n)) + rng.normal(0, 3)
        s = 1 / (1 + np.exp(-x))
        scores += list(s); labels += list(y.astype(int)); groups += [f"p{i}"] * n
        pools.append((s, y))
    return scores, labels, groups, pools


@pytest.mark.parametrize("sigma_right,sigma_wrong", [(1.0, 1.0), (1.0, 1.6)])
def test_matched_scores_recovers_the_within_problem_distributions(sigma_right, sigma_wrong):
    scores, labels, groups, _ = gaussian_verifier_pools(sigma_right=sigma_right, sigma_wrong=sigma_wrong)
    fit = matched_scores(scores, labels, groups)
    assert fit["mu_right"] == pytest.approx(1.0, abs=0.08) and fit["mu_wrong"] == 0.0
    assert fit["sigma_right"] == pytest.approx(sigma_right, abs=0.08)
    assert fit["sigma_wrong"] == pytest.approx(sigma_wrong, abs=0.05)


def test_matched_scores_reproduce_argmax_where_matched_flip_does_not():
    """A Gaussian N(1,1)/N(0,1) verifier (plus problem offsets) on pools of 64 at p in 0.05-0.3: argmax reaches
    about 0.58; the same pools under flip noise of its rates at threshold 0.5 reach far less, under the matched
    score noise about the same."""
    scores, labels, groups, pools = gaussian_verifier_pools(n_problems=400)
    measured = np.mean([estimators.best_of_k_curve(s, y.astype(float), [64])[0] for s, y in pools])
    fit = matched_scores(scores, labels, groups)
    # what the matched arm measures: the exact oracle's labels of the same pools under the fitted score noise
    rng = np.random.default_rng(1)
    # (averaged over 5 draws: the measured side's standard error is about 0.025 over 400 problems)
    matched = np.mean([estimators.best_of_k_curve(
        np.where(y, rng.normal(fit["mu_right"], fit["sigma_right"], len(y)), rng.normal(0, fit["sigma_wrong"], len(y))),
        y.astype(float), [64])[0] for _ in range(5) for _, y in pools])
    s, y = np.asarray(scores), np.asarray(labels, bool)
    tpr, fpr = (s[y] >= 0.5).mean(), (s[~y] >= 0.5).mean()
    flipped = np.mean([estimators.best_of_k_curve(
        np.where(y, rng.random(len(y)) < tpr, rng.random(len(y)) < fpr).astype(float), y.astype(float), [64])[0]
        for _, y in pools])
    assert abs(matched - measured) < 0.06
    assert measured - flipped > 0.2


def test_youden_threshold_is_none_where_it_is_undefined_and_the_result_is_strict_json():
    import json

    from search.analysis.verifier_metrics import level_quality

    none_right = level_quality([0.2, 0.7, 0.9], [0, 0, 0], 0.5)       # a random policy's pool: no right candidate
    assert none_right["youden_threshold"] is None and none_right["tpr"] is None
    json.dumps(none_right, allow_nan=False)
    both = level_quality([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1], 0.5)
    assert both["youden_threshold"] == 0.6 and both["youden_tpr"] == 1.0 and both["youden_fpr"] == 0.0
