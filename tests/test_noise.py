"""Noise wrappers have the error rates they claim, draw independently per candidate position and per step, are seeded
per candidate, and the pool estimators under noise agree with the closed forms of ESTIMATORS.md (inside a
simultaneous 95% band over problems, and by the paired test against the closed form given each pool)."""
import numpy as np
import pytest

from search.analysis import closed_forms, estimators
from search.contracts import Candidate, LabError, Problem
from search.tasks.arith import ArithTask
from verifiers.noise import Flip, ScoreNoise
from verifiers.noise import predict as noise_predict
from verifiers.noise import predict_pool as noise_predict_pool
from verifiers.oracle import OutcomeOracle, ProcessOracle

TASK = ArithTask()


def pool(n_right, n_wrong, tag="", distinct=False):
    """A problem whose answer is 1, and a pool of n_right candidates answering 1 and n_wrong answering 2. All right
    candidates have one text and all wrong ones another (as a policy's repeated samples do), unless ``distinct``."""
    problem = Problem(id=f"p{tag}", prompt="Q:0+1\n", reference="1", metadata={})
    cands = [Candidate(steps=(f"A:{a}",), answer=str(a), text=f"{i}|A:{a}" if distinct else f"A:{a}",
                       prompt_tokens=1, completion_tokens=1, finish_reason="stop")
             for i, a in enumerate([1] * n_right + [2] * n_wrong)]
    return problem, cands


def within(rate, p, n):
    return abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_flip_rates_and_seeding():
    # every right candidate has the same text: the rates hold only if the draw depends on the position in the pool
    problem, cands = pool(2000, 2000)
    flip = Flip(OutcomeOracle(TASK), tpr=0.8, fpr=0.3, seed=5)
    scores = np.array(flip.score(problem, cands).final)
    assert set(np.unique(scores)) <= {0.0, 1.0}
    assert within(scores[:2000].mean(), 0.8, 2000) and within(scores[2000:].mean(), 0.3, 2000)
    # neighbours in the pool are independent: P(both accepted) = TPR^2, not TPR
    both = (scores[:1999] * scores[1:2000]).mean()
    assert within(both, 0.64, 1999)
    assert (flip.score(problem, cands).final == scores).all()                   # same seed, same noise
    assert (Flip(OutcomeOracle(TASK), 0.8, 0.3, seed=6).score(problem, cands).final != scores).any()
    assert flip.name == "outcome_oracle+flip" and flip.params() == {"noise": "flip", "seed": 5, "tpr": 0.8, "fpr": 0.3}


def test_noise_depends_on_the_problem_position_text_and_step_only():
    problem, cands = pool(200, 0)
    flip = Flip(OutcomeOracle(TASK), tpr=0.5, fpr=0.5, seed=1)
    scores = flip.score(problem, cands).final
    # a candidate keeps its fate: the same candidate at the same position in a smaller call draws the same
    assert flip.score(problem, cands[:50]).final == scores[:50]
    # another problem draws afresh (about half of 200 fair coins differ)
    other, _ = pool(200, 0, tag="x")
    changed = sum(a != b for a, b in zip(scores, flip.score(other, cands).final))
    assert 60 <= changed <= 140
    # another text at the same position draws afresh too
    recast = [Candidate(steps=("A:1",), answer="1", text="A:1 ", prompt_tokens=1, completion_tokens=1,
                        finish_reason="stop")] * 200
    changed = sum(a != b for a, b in zip(scores, flip.score(problem, recast).final))
    assert 60 <= changed <= 140


def test_step_noise_is_drawn_per_step():
    """Flip noise with TPR 1/2 on the process oracle: every step of the reference solution is right, so each step's
    score is a fair coin; adjacent steps agree half the time (a draw shared by all steps would always agree)."""
    problem = TASK._make(1, tuple(("+", 1) for _ in range(29)))                  # 30 steps, all right
    text = TASK.solution(problem)
    cand = Candidate(steps=TASK.split_steps(text), answer=TASK.extract_answer(text), text=text, prompt_tokens=1,
                     completion_tokens=1, finish_reason="stop")
    noisy = Flip(ProcessOracle(TASK), tpr=0.5, fpr=0.5, seed=3)
    rows = np.array(noisy.score(problem, [cand] * 40).steps)                     # 40 positions x 30 steps
    assert rows.shape == (40, 30) and set(np.unique(rows)) == {0.0, 1.0}
    assert within(rows.mean(), 0.5, rows.size)
    agree = (rows[:, 1:] == rows[:, :-1]).mean()
    assert within(agree, 0.5, rows[:, 1:].size)
    # and a wrong step is accepted at the FPR: on a solution wrong from its first step every step is "wrong"
    wrong = "1+1=3\n3+1=4\nA:4"
    bad = Candidate(steps=TASK.split_steps(wrong), answer="4", text=wrong, prompt_tokens=1, completion_tokens=1,
                    finish_reason="stop")
    rates = np.array(Flip(ProcessOracle(TASK), tpr=1.0, fpr=0.2, seed=3).score(problem, [bad] * 2000).steps)
    assert all(within(rates[:, j].mean(), 0.2, 2000) for j in range(3))


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


def simulate(noise_factory, ps, n, ks, rule, distinct=False):
    """Per-problem measured curve (pool estimator under noise) and the closed form given that problem's pool (n, c),
    for problems of right-rate ps with pools of n samples of which c = round(p n) are right."""
    measured, predicted, pools = [], [], []
    for j, p in enumerate(ps):
        c = int(round(p * n))
        problem, cands = pool(c, n - c, tag=j, distinct=distinct)
        verifier = noise_factory()
        scores = verifier.score(problem, cands).final
        correct = [TASK.grade(problem, x.answer) for x in cands]
        if rule == "argmax":
            measured.append(estimators.best_of_k_curve(scores, [float(x) for x in correct], ks))
        else:
            measured.append([estimators.binary_accept_at_k([s >= 0.5 for s in scores], correct, k)[0] for k in ks])
        predicted.append(noise_predict_pool(verifier.params(), n, c, ks)[rule])
        pools.append(c)
    return np.array(measured), np.array(predicted), verifier.params(), pools


def assert_inside(measured, curve, name=""):
    """The closed-form curve lies inside the simultaneous 95% band of the measured curve (bootstrap over problems)."""
    lo, hi = estimators.simultaneous_band(measured, seed=1)
    assert ((lo <= curve + 1e-12) & (curve <= hi + 1e-12)).all(), (name, lo, curve, hi)


def wrong_prediction(params, pools, n, ks, rule):
    """The closed form given each pool with a mis-stated noise level (fpr or eps off by 0.1)."""
    bad = dict(params)
    bad["fpr" if "fpr" in bad else "eps"] += 0.1
    return np.array([noise_predict_pool(bad, n, c, ks)[rule] for c in pools])


@pytest.mark.parametrize("name,factory,rule", [
    ("flip argmax", lambda: Flip(OutcomeOracle(TASK), tpr=0.85, fpr=0.25, seed=1), "argmax"),
    ("flip accept", lambda: Flip(OutcomeOracle(TASK), tpr=0.85, fpr=0.25, seed=2), "accept"),
    ("contamination", lambda: ScoreNoise(OutcomeOracle(TASK), family="contamination", eps=0.2, seed=3), "argmax"),
])
def test_measured_curves_agree_with_the_closed_form_given_each_pool(name, factory, rule):
    """Inside the band, and not rejected by the paired test; a noise level off by 0.1 is rejected by the paired test.

    The thresholds hold with margin for every noise seed, not just the one here: over noise seeds 0..19 of each case
    the right closed form was inside the band 20 times of 20 with paired p_joint >= 0.009, and the wrong one had
    p_joint <= 0.0004 (the band alone caught the wrong contamination level for only 12 of the 20 seeds)."""
    rng = np.random.default_rng(0)
    ps = rng.uniform(0.05, 0.95, size=300)
    ks = [1, 2, 4, 8, 16, 32]
    measured, predicted, params, pools = simulate(factory, ps, 64, ks, rule)
    assert_inside(measured, predicted.mean(axis=0), name)
    assert closed_forms.paired_agreement(measured, predicted)["p_joint"] > 0.001, name
    wrong = wrong_prediction(params, pools, 64, ks, rule)
    assert closed_forms.paired_agreement(measured, wrong)["p_joint"] < 0.005, name


def test_spread_noise_rises_then_falls_as_predicted():
    ks = [1, 8, 64, 256]
    measured, predicted, params, _ = simulate(
        lambda: ScoreNoise(OutcomeOracle(TASK), family="spread", mu_right=1.5, sigma_wrong=1.6, seed=4),
        [0.3] * 60, 512, ks, "argmax")
    curve = measured.mean(axis=0)
    assert curve[1] > curve[0] + 0.15 and curve[3] < curve[1] - 0.1        # up, then down
    assert np.abs(curve - predicted.mean(axis=0)).max() < 0.04
    # the population form at p = 0.3 (ESTIMATORS.md: about 0.30 at k = 1, 0.54 at k = 8, 0.30 at k = 256)
    assert noise_predict(params, 0.3, ks)["argmax"] == pytest.approx([0.30, 0.536, 0.43, 0.297], abs=0.01)


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
