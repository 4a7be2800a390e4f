"""The ensemble verifier (verifiers/ensemble.py): its rules, its label-free EM, its cross-fitted logistic regression,
its compute, and its errors."""
import numpy as np
import pytest

from search.build import build_task, build_verifier, compose
from search.contracts import Candidate, LabError, Problem, Scores
from search.tasks.arith import ArithTask
from verifiers.ensemble import Ensemble, fit_logistic, fold_of, naive_bayes_em, nb_posterior


def _simulate(n, tpr, fpr, prior, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prior
    votes = np.where(y[:, None], rng.random((n, len(tpr))) < tpr, rng.random((n, len(fpr))) < fpr)
    return votes, y


def test_em_recovers_member_rates_without_labels():
    tpr, fpr = np.array([0.9, 0.75, 0.6, 0.55]), np.array([0.3, 0.1, 0.2, 0.5])
    votes, _ = _simulate(20000, tpr, fpr, 0.35)
    em = naive_bayes_em(votes)
    assert em["tpr"] == pytest.approx(tpr, abs=0.03) and em["fpr"] == pytest.approx(fpr, abs=0.03)
    assert em["prior"] == pytest.approx(0.35, abs=0.03)


def test_naive_bayes_weights_beat_the_plain_vote_with_unequal_members():
    """One good member and four near-useless ones: the vote follows the crowd, naive Bayes follows the good one."""
    tpr, fpr = np.array([0.95, 0.6, 0.6, 0.6, 0.6]), np.array([0.05, 0.45, 0.45, 0.45, 0.45])
    votes, y = _simulate(20000, tpr, fpr, 0.5, seed=1)
    em = naive_bayes_em(votes)
    nb = nb_posterior(votes, em["tpr"], em["fpr"], em["prior"]) >= 0.5
    vote = votes.mean(axis=1) >= 0.5
    assert (nb == y).mean() > (vote == y).mean() + 0.1


def test_logistic_fit_recovers_known_weights():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20000, 3))
    w = np.array([-0.5, 2.0, 0.0, -1.0])
    y = rng.random(20000) < 1 / (1 + np.exp(-(w[0] + X @ w[1:])))
    assert fit_logistic(X, y, l2=0.0) == pytest.approx(w, abs=0.1)


class Fixed:
    """A member with given scores by candidate text, and a known token count and size."""

    kind = "outcome"

    def __init__(self, table, n_params=0, tokens=0):
        self.table, self.n_params, self.tokens = table, n_params, tokens

    def score(self, problem, candidates):
        return Scores(steps=tuple((self.table[c.text],) for c in candidates), tokens=self.tokens)


def _cands(texts):
    return tuple(Candidate(steps=(t,), answer=t, text=t, prompt_tokens=1, completion_tokens=1, finish_reason="stop")
                 for t in texts)


def test_mean_and_vote_and_the_flops_of_a_mixed_ensemble():
    a = Fixed({"x": 0.9, "y": 0.2}, n_params=100, tokens=10)
    b = Fixed({"x": 0.4, "y": 0.6}, n_params=300, tokens=30)
    problem = Problem("p", "Q", "x")
    mean = Ensemble(None, [a, b], rule="mean").score(problem, _cands("xy"))
    assert mean.final == pytest.approx((0.65, 0.4))
    vote = Ensemble(None, [a, b], rule="vote").score(problem, _cands("xy"))
    assert vote.final == (0.5, 0.5)
    # the ledger's 2 x n_params x tokens equals the members' own 2 x 100 x 10 + 2 x 300 x 30 (to one token)
    assert Ensemble(None, [a, b]).n_params * mean.tokens == 100 * 10 + 300 * 30


def test_the_members_counts_are_the_ensembles_under_their_names():
    # a served member that cuts candidates at its context says so through the ensemble, under noise or not
    from verifiers.noise import Flip
    from tests.arith_fakes import LongReader

    task = ArithTask()
    problem = task.problems("eval", 1)[0]
    a, b = LongReader(task, limit=3), LongReader(task, limit=1)
    ensemble = Ensemble(task, [a, Flip(b, tpr=0.9, fpr=0.1), Fixed({"abcd": 0.5, "xy": 0.5})])
    ensemble.score(problem, _cands(["abcd", "xy"]))
    assert ensemble.counts() == {"0:long_reader.cut": 1, "0:long_reader.undecided": 0,
                                 "1:long_reader.cut": 2, "1:long_reader.undecided": 0}


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """A finished run on the fake arithmetic policy: 40 problems, pools of 16 (the labelled split)."""
    from search.engine.runner import run
    from tests.arith_fakes import with_fake_policy

    out = tmp_path_factory.mktemp("fit")
    cfg = with_fake_policy(compose(["n_problems=40", "strategy.budget=16", "bootstrap_resamples=20",
                                    "weighted_vote_draws=20", "concurrency=1"]), slip=0.15)
    run(cfg, out)
    return out


def _ensemble(rule, fit_run=None):
    cfg = compose(["verifier=ensemble", f"verifier.rule={rule}"] + ([f"verifier.fit_run={fit_run}"] if fit_run else []))
    return build_verifier(cfg, build_task(cfg))[0]


def test_logistic_is_cross_fitted_and_weighs_the_informative_members(fit_run):
    from search.engine.stored_pools import load_pools

    ens = _ensemble("logistic", fit_run)
    _, pools = load_pools(fit_run)
    scores = [ens.score(p.problem, p.candidates) for p in pools]
    fit = ens.fitted
    assert set(fit["problems"].values()) == {0, 1}
    assert {k: v for k, v in fit["problems"].items()} == {p.problem.id: fold_of(p.problem.id) for p in pools}
    for f in (0, 1):
        w = fit["weights"][f]
        # a 0/1 member's logit moves 18.4 between reject and accept, the random member's logit has sd 1.8: compare
        # what each can move the log-odds by
        assert w[1:4].min() * 18.4 > 1.0 and abs(w[4]) * 1.8 < w[1:4].min() * 18.4 / 5
    assert not np.allclose(fit["weights"][0], fit["weights"][1])
    assert all(0 <= s <= 1 for sc in scores for s in sc.final)


def test_naive_bayes_fits_on_the_run_or_on_each_call(fit_run):
    from search.engine.stored_pools import load_pools

    _, pools = load_pools(fit_run)
    fitted = _ensemble("naive_bayes", fit_run)
    fitted.score(pools[0].problem, pools[0].candidates)
    em = fitted.fitted["em"]
    # the members' real rates are (0.9, 0.8, 0.7) / (0.3, 0.2, 0.1); the random member's are 1/2 and 1/2
    assert em["tpr"][:3] == pytest.approx([0.9, 0.8, 0.7], abs=0.1)
    assert em["fpr"][:3] == pytest.approx([0.3, 0.2, 0.1], abs=0.1)
    assert em["tpr"][3] == pytest.approx(0.5, abs=0.1) and em["fpr"][3] == pytest.approx(0.5, abs=0.1)
    per_call = _ensemble("naive_bayes").score(pools[0].problem, pools[0].candidates)
    assert len(per_call.final) == len(pools[0].candidates)


@pytest.mark.parametrize("overrides, message", [
    (["verifier.rule=median"], "verifier.rule='median' is not an ensemble rule"),
    (["verifier.rule=logistic"], "verifier.rule=logistic needs verifier.fit_run=RUN_DIR"),
    (["verifier.members=[]"], "verifier.members is empty"),
    (["verifier.members=[{seed: 1}]"], r"verifier.members\[0\] is .*each member needs a _target_"),
])
def test_bad_config_is_one_line(overrides, message):
    cfg = compose(["verifier=ensemble", *overrides])
    with pytest.raises(LabError, match=message):
        build_verifier(cfg, build_task(cfg))


def test_the_command_line_gives_one_error_line_and_exit_2():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "search.run", "verifier=ensemble", "verifier.rule=logistic"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: verifier.rule=logistic needs") and out.stderr.count("\n") == 1


def test_the_members_figure_is_drawn_from_a_table(tmp_path):
    import pandas as pd

    from plots.ensemble_curves import accuracy_vs_members

    rows = [dict(noise="ensemble_flip", tpr=0.7, fpr=0.3, members=K, rho=rho, selection=rule, k=k, accuracy=acc,
                 accuracy_lo=acc - 0.05, accuracy_hi=acc + 0.05, closed_form=acc + 0.01)
            for K in (1, 3, 5) for rho in (0.0, 0.5) for rule in ("argmax", "accept", "coverage") for k in (4, 16)
            for acc in [0.6 + 0.02 * K * (1 - rho)]]
    [figure] = accuracy_vs_members(pd.DataFrame(rows), tmp_path)
    assert figure.name == "accuracy_vs_members" and all(p.exists() for p in figure.paths)
    assert accuracy_vs_members(pd.DataFrame(rows).assign(noise="flip"), tmp_path) == []
