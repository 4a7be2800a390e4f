"""Noise wrappers have the error rates they claim, are seeded per candidate, and the pool estimators under noise
agree with the closed forms of ESTIMATORS.md (within a simultaneous 95% band over problems)."""
import numpy as np
import pytest

from search.analysis import closed_forms, estimators
from search.contracts import Candidate, LabError, Problem
from search.tasks.arith import ArithTask
from verifiers.noise import Flip, ScoreNoise
from verifiers.noise import predict as noise_predict
from verifiers.oracle import OutcomeOracle, ProcessOracle

TASK = ArithTask()


def pool(n_right, n_wrong, tag=""):
    """A problem whose answer is 1, and a pool of distinct candidates: n_right answer 1, n_wrong answer 2."""
    problem = Problem(id=f"p{tag}", prompt="Q:0+1\n", reference="1", metadata={})
    cands = [Candidate(steps=(f"A:{a}",), answer=str(a), text=f"{i}|A:{a}", prompt_tokens=1, completion_tokens=1,
                       finish_reason="stop") for i, a in enumerate([1] * n_right + [2] * n_wrong)]
    return problem, cands


def test_flip_rates_and_seeding():
    problem, cands = pool(2000, 2000)
    flip = Flip(OutcomeOracle(TASK), tpr=0.8, fpr=0.3, seed=5)
    scores = np.array(flip.score(problem, cands).final)
    assert set(np.unique(scores)) <= {0.0, 1.0}
    tpr, fpr = scores[:2000].mean(), scores[2000:].mean()
    assert abs(tpr - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 2000) and abs(fpr - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 2000)
    assert (flip.score(problem, cands).final == scores).all()                   # same seed, same noise
    assert (Flip(OutcomeOracle(TASK), 0.8, 0.3, seed=6).score(problem, cands).final != scores).any()
    assert flip.name == "outcome_oracle+flip" and flip.params() == {"noise": "flip", "seed": 5, "tpr": 0.8, "fpr": 0.3}


def test_noise_is_per_step_on_process_verifiers():
    problem = TASK._make(17, (("+", 5), ("*", 3)))
    cands = [Candidate(steps=TASK.split_steps(t), answer=TASK.extract_answer(t), text=t, prompt_tokens=1,
                       completion_tokens=1, finish_reason="stop") for t in ("17+5=22\n22*3=66\nA:66", "17+5=2")]
    noisy = ScoreNoise(ProcessOracle(TASK), sigma_right=0.5, sigma_wrong=0.5)
    scores = noisy.score(problem, cands)
    assert noisy.kind == "process" and [len(s) for s in scores.steps] == [3, 1]
    assert all(0 < x < 1 for s in scores.steps for x in s)


def test_bad_noise_parameters_are_lab_errors():
    with pytest.raises(LabError, match="tpr"):
        Flip(OutcomeOracle(TASK), tpr=1.2)
    with pytest.raises(LabError, match="eps"):
        ScoreNoise(OutcomeOracle(TASK), eps=-0.1)


def simulate(noise_factory, ps, n, ks, rule):
    """Per-problem measured curve (pool estimator under noise) and closed-form curve, for problems of right-rate
    ps with pools of n samples whose right count is the expected one (so the closed form's p is the pool's)."""
    measured, predicted = [], []
    for j, p in enumerate(ps):
        c = int(round(p * n))
        problem, cands = pool(c, n - c, tag=j)
        verifier = noise_factory()
        scores = verifier.score(problem, cands).final
        correct = [TASK.grade(problem, x.answer) for x in cands]
        if rule == "argmax":
            measured.append(estimators.best_of_k_curve(scores, [float(x) for x in correct], ks))
        else:
            measured.append([estimators.binary_accept_at_k([s >= 0.5 for s in scores], correct, k)[0] for k in ks])
        predicted.append(noise_predict(verifier.params(), c / n, ks)[rule])
    return np.array(measured), np.array(predicted), verifier.params()


def assert_inside(measured, curve, name=""):
    """The closed-form curve lies inside the simultaneous 95% band of the measured curve (bootstrap over problems)."""
    lo, hi = estimators.simultaneous_band(measured, seed=1)
    assert ((lo <= curve + 1e-12) & (curve <= hi + 1e-12)).all(), (name, lo, curve, hi)


def wrong_prediction(params, ps, n, ks, rule):
    """The closed form with a mis-stated noise level (fpr or eps off by 0.1): what a wrong formula looks like."""
    bad = dict(params)
    bad["fpr" if "fpr" in bad else "eps"] += 0.1
    return np.array([noise_predict(bad, round(p * n) / n, ks)[rule] for p in ps])


@pytest.mark.parametrize("name,factory,rule", [
    ("flip argmax", lambda: Flip(OutcomeOracle(TASK), tpr=0.85, fpr=0.25, seed=1), "argmax"),
    ("flip accept", lambda: Flip(OutcomeOracle(TASK), tpr=0.85, fpr=0.25, seed=2), "accept"),
    ("contamination", lambda: ScoreNoise(OutcomeOracle(TASK), family="contamination", eps=0.2, seed=3), "argmax"),
])
def test_measured_curves_lie_in_the_simultaneous_band_around_the_closed_form(name, factory, rule):
    rng = np.random.default_rng(0)
    ps = rng.uniform(0.05, 0.95, size=300)
    ks = [1, 2, 4, 8, 16, 32]
    measured, predicted, params = simulate(factory, ps, 64, ks, rule)
    assert_inside(measured, predicted.mean(axis=0), name)
    # and the band has power: the closed form of a noise level off by 0.1 falls outside it
    wrong = wrong_prediction(params, ps, 64, ks, rule).mean(axis=0)
    lo, hi = estimators.simultaneous_band(measured, seed=1)
    assert ((wrong < lo - 1e-12) | (wrong > hi + 1e-12)).any(), (name, lo, hi, wrong)


def test_spread_noise_rises_then_falls_as_predicted():
    ks = [1, 8, 64, 256]
    measured, predicted, _ = simulate(
        lambda: ScoreNoise(OutcomeOracle(TASK), family="spread", mu_right=1.5, sigma_wrong=1.6, seed=4),
        [0.3] * 60, 512, ks, "argmax")
    curve = measured.mean(axis=0)
    assert curve[1] > curve[0] + 0.15 and curve[3] < curve[1] - 0.1        # up, then down
    assert np.abs(curve - predicted.mean(axis=0)).max() < 0.04
    assert predicted[0] == pytest.approx([0.30, 0.536, 0.43, 0.297], abs=0.01)


def test_closed_forms_match_estimators_md():
    assert closed_forms.score_accuracy(0.3, [1, 8, 256, 4096], mu_right=1.5, sigma_wrong=1.6) == pytest.approx(
        [0.30, 0.54, 0.30, 0.07], abs=0.01)
    ks = np.arange(1, 40)
    best = [ks[np.argmax(0.6 * closed_forms.flip_utility(0.8, .95, .15, c, ks)
                         + 0.4 * closed_forms.flip_utility(0.05, .95, .15, c, ks))] for c in (1, 2, 4)]
    assert best == [2, 2, 1]
    # the contamination ceiling p / (p + (1-p) eps), reached through the integral form
    acc = closed_forms.score_accuracy(0.4, [10**6], sigma_right=0.3, sigma_wrong=0.3, mu_right=5, eps=0.1)
    assert acc[0] == pytest.approx(0.4 / (0.4 + 0.6 * 0.1), abs=0.01)
    assert closed_forms.best_of_n_kl([1, 2])[0] == 0 and closed_forms.best_of_n_kl([2])[0] == pytest.approx(
        np.log(2) - 0.5)
