"""Closed forms of verifier ensembles (search/analysis/ensemble_forms.py) against enumeration, simulation, and the
measured curves of the ensemble noise families under the paired test."""
import itertools

import numpy as np
import pytest

from search.analysis import ensemble_forms as ef
from search.analysis.closed_forms import flip_accuracy, flip_pool, paired_agreement
from search.analysis.estimators import best_of_k_curve, binary_accept_at_k
from search.analysis.pool import evaluate_pool
from search.contracts import Candidate, LabError, Problem
from verifiers.ensemble_noise import CorrelatedFlip, EnsembleFlip, member_uniform
from verifiers.noise import predict_pool


class ExactTask:
    """Just enough task for the outcome oracle: right when the answer equals the reference."""

    name = "exact"

    def grade(self, problem, answer):
        return answer == problem.reference


def _pool(pid: str, n: int, c: int) -> tuple[Problem, tuple[Candidate, ...]]:
    problem = Problem(id=pid, prompt="Q", reference="1")
    return problem, tuple(Candidate(steps=(f"s{i}",), answer="1" if i < c else "0", text=f"t{i}", prompt_tokens=1,
                                    completion_tokens=1, finish_reason="stop") for i in range(n))


def test_patterns_have_the_member_rates_and_the_set_correlation():
    patterns, probs = ef.pattern_probabilities([0.7, 0.7, 0.7], rho=0.4)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    marg = probs @ patterns
    assert marg == pytest.approx([0.7] * 3, abs=1e-12)
    both = probs @ (patterns[:, 0] & patterns[:, 1])
    corr = (both - 0.49) / (0.7 * 0.3)
    assert corr == pytest.approx(0.4, abs=1e-12)
    # independent members: the product of the marginals
    patterns, probs = ef.pattern_probabilities([0.9, 0.2], rho=0.0)
    assert dict(zip(map(tuple, patterns.astype(int)), probs))[(1, 0)] == pytest.approx(0.9 * 0.8)


def test_patterns_match_the_noise_family_draws():
    """The closed form's pattern distribution is what ``member_uniform`` draws (20,000 keys, 3 members)."""
    rates, rho, N = [0.8, 0.6, 0.3], 0.5, 20000
    patterns, probs = ef.pattern_probabilities(rates, rho)
    seen = np.zeros(len(patterns))
    for i in range(N):
        x = [member_uniform(7, rho, m, ("p", i, "t", 0)) < r for m, r in enumerate(rates)]
        seen[int("".join("1" if v else "0" for v in x), 2)] += 1
    se = np.sqrt(probs * (1 - probs) / N)
    assert np.all(np.abs(seen / N - probs) < 4.5 * se + 1e-9)


@pytest.mark.parametrize("members, rho", [(1, 0.0), (3, 0.0), (4, 0.0), (5, 0.3), (6, 0.8)])
def test_vote_rates_written_out_equal_the_enumeration(members, rho):
    values, a, b = ef.ensemble_levels([0.75] * members, [0.35] * members, "vote", rho)
    keep = values >= 0.5
    assert ef.vote_rates(members, 0.75, 0.35, rho) == pytest.approx((a[keep].sum(), b[keep].sum()), abs=1e-12)


def _brute_force(n, c, values, a, b, ks, cost=0.0):
    """Every assignment of a level to each of the n samples, and every k-subset (the estimators enumerate them)."""
    out = {key: np.zeros(len(ks)) for key in ("argmax", "accept", "abstain", "accept_reward")}
    correct = [True] * c + [False] * (n - c)
    for levels in itertools.product(range(len(values)), repeat=n):
        prob = np.prod([(a if ok else b)[lv] for ok, lv in zip(correct, levels)])
        if prob == 0:
            continue
        scores = [values[lv] for lv in levels]
        out["argmax"] += prob * best_of_k_curve(scores, [float(x) for x in correct], ks)
        for i, k in enumerate(ks):
            acc, reward, abstain = binary_accept_at_k([s >= 0.5 for s in scores], correct, k, cost)
            out["accept"][i] += prob * acc
            out["abstain"][i] += prob * abstain
            out["accept_reward"][i] += prob * reward
    return out


@pytest.mark.parametrize("rule, tprs, fprs, rho, n, c", [
    ("vote", [0.7] * 3, [0.3] * 3, 0.3, 5, 2),
    ("vote", [0.9, 0.6], [0.4, 0.1], 0.0, 5, 3),
    ("naive_bayes", [0.9, 0.7, 0.6], [0.4, 0.2, 0.1], 0.0, 4, 2),
    ("naive_bayes", [0.8, 0.8, 0.6], [0.3, 0.1, 0.3], 0.5, 4, 1),
])
def test_levels_pool_equals_brute_force(rule, tprs, fprs, rho, n, c):
    values, a, b = ef.ensemble_levels(tprs, fprs, rule, rho)
    ks = list(range(1, n + 1))
    form = ef.levels_pool(n, c, values, a, b, ks, fp_cost=1.5)
    brute = _brute_force(n, c, values, a, b, ks, cost=1.5)
    for key in brute:
        assert form[key] == pytest.approx(brute[key], abs=1e-12), key


def test_one_member_is_flip_noise():
    values, a, b = ef.ensemble_levels([0.8], [0.25], "vote")
    assert ef.levels_pool(12, 5, values, a, b, [1, 3, 12])["argmax"] == pytest.approx(
        flip_pool(12, 5, 0.8, 0.25, [1, 3, 12])["argmax"], abs=1e-12)
    assert ef.levels_accuracy(0.3, values, a, b, [1, 4, 16])["argmax"] == pytest.approx(
        flip_accuracy(0.3, 0.8, 0.25, [1, 4, 16], abstain=False), abs=1e-12)


def test_population_form_matches_simulation():
    rng = np.random.default_rng(0)
    values, a, b = ef.ensemble_levels([0.7] * 5, [0.3] * 5, "vote", 0.4)
    p, ks, N = 0.3, [1, 4, 16], 40000
    form = ef.levels_accuracy(p, values, a, b, ks)["argmax"]
    for k, want in zip(ks, form):
        right = rng.random((N, k)) < p
        lv = np.where(right, rng.choice(len(values), (N, k), p=a), rng.choice(len(values), (N, k), p=b))
        noise = rng.random((N, k)) * 1e-3                  # uniform tie-breaking among equal levels
        pick = np.argmax(lv + noise, axis=1)
        got = right[np.arange(N), pick].mean()
        assert abs(got - want) < 4.5 * np.sqrt(want * (1 - want) / N)


def _measure(noise, n_problems=160, n=16, seed=0):
    from verifiers.oracle import OutcomeOracle

    rng = np.random.default_rng(seed)
    verifier = noise(OutcomeOracle(ExactTask()))
    ks = [1, 2, 4, 8, 16]
    measured, cs = {"argmax": [], "accept": []}, []
    for i in range(n_problems):
        c = int(rng.integers(0, n + 1))
        problem, cands = _pool(f"p{i}", n, c)
        scores = list(verifier.score(problem, cands).final)
        out = evaluate_pool([x.answer for x in cands], [x.answer == "1" for x in cands], scores, ks, prompt_tokens=1,
                            completion_tokens=[1] * n, verifier_tokens=0, policy_params=1, verifier_params=0,
                            weighted_draws=1)
        for rule in measured:
            measured[rule].append(out[rule])
        cs.append(c)
    return verifier, ks, {r: np.array(v) for r, v in measured.items()}, cs


@pytest.mark.parametrize("rule, rho", [("vote", 0.0), ("vote", 0.6), ("naive_bayes", 0.3)])
def test_measured_ensemble_agrees_with_its_closed_form_under_the_paired_test(rule, rho):
    verifier, ks, measured, cs = _measure(lambda v: EnsembleFlip(v, members=5, tpr=0.7, fpr=0.3, rho=rho, rule=rule,
                                                                 seed=3))
    for name in ("argmax", "accept"):
        predicted = np.array([predict_pool(verifier.params(), 16, c, ks)[name] for c in cs])
        assert paired_agreement(measured[name], predicted)["p_joint"] > 0.01, name


def test_the_paired_test_sees_a_correlation_the_closed_form_ignores():
    verifier, ks, measured, cs = _measure(lambda v: EnsembleFlip(v, members=7, tpr=0.7, fpr=0.3, rho=0.7, seed=1))
    wrong = dict(verifier.params(), rho=0.0)
    predicted = np.array([predict_pool(wrong, 16, c, ks)["argmax"] for c in cs])
    assert paired_agreement(measured["argmax"], predicted)["p_joint"] < 0.01


def test_correlated_flip_member_is_flip_noise_at_the_margin():
    verifier, ks, measured, cs = _measure(lambda v: CorrelatedFlip(v, tpr=0.8, fpr=0.2, rho=0.5, member=2, seed=4))
    predicted = np.array([predict_pool(verifier.params(), 16, c, ks)["argmax"] for c in cs])
    assert paired_agreement(measured["argmax"], predicted)["p_joint"] > 0.01


def test_bad_parameters_are_one_line_errors():
    from verifiers.oracle import OutcomeOracle

    base = OutcomeOracle(ExactTask())
    for kwargs in ({"members": 0}, {"members": 17}, {"rho": 1.5}, {"rule": "median"}, {"tpr": -0.1}):
        with pytest.raises(LabError, match="noise ensemble_flip"):
            EnsembleFlip(base, **kwargs)
    with pytest.raises(LabError, match="member"):
        CorrelatedFlip(base, member=-1)


def test_naive_bayes_with_em_rates_agrees_with_its_closed_form():
    """Heterogeneous correlated members, naive Bayes with rates and prior estimated by EM without labels on other
    draws (``verifiers.ensemble.naive_bayes_em``): the closed form with those estimates plugged in as the assumed
    rates, and the true rates generating the verdicts, agrees with the measured curves under the paired test."""
    from verifiers.ensemble import naive_bayes_em, nb_posterior

    tprs, fprs, rho, n, ks = [0.9, 0.75, 0.6], [0.35, 0.15, 0.25], 0.3, 16, [1, 2, 4, 8, 16]
    rng = np.random.default_rng(5)

    def verdicts(pid, cands, seed):
        return np.array([[member_uniform(seed, rho, m, (pid, i, c.text, 0)) < (t if c.answer == "1" else f)
                          for m, (t, f) in enumerate(zip(tprs, fprs))] for i, c in enumerate(cands)])

    train = np.vstack([verdicts(f"t{i}", _pool(f"t{i}", n, int(rng.integers(0, n + 1)))[1], 11) for i in range(150)])
    em = naive_bayes_em(train)
    values, a, b = ef.ensemble_levels(tprs, fprs, "naive_bayes", rho, em["tpr"], em["fpr"], em["prior"])
    measured, predicted = [], []
    for i in range(160):
        c = int(rng.integers(0, n + 1))
        problem, cands = _pool(f"p{i}", n, c)
        scores = nb_posterior(verdicts(problem.id, cands, 3), em["tpr"], em["fpr"], em["prior"]).tolist()
        out = evaluate_pool([x.answer for x in cands], [x.answer == "1" for x in cands], scores, ks, prompt_tokens=1,
                            completion_tokens=[1] * n, verifier_tokens=0, policy_params=1, verifier_params=0,
                            weighted_draws=1)
        measured.append([out["argmax"], out["accept"]])
        form = ef.levels_pool(n, c, values, a, b, ks)
        predicted.append([form["argmax"], form["accept"]])
    measured, predicted = np.array(measured), np.array(predicted)
    for r in (0, 1):
        assert paired_agreement(measured[:, r], predicted[:, r])["p_joint"] > 0.01
