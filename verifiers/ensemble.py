"""An ensemble of verifiers: K members of any kind (oracles under noise, learned models, plug-ins), one score.

    python -m search.run verifier=ensemble                                  # three noisy oracles and a random one
    python -m search.run verifier=ensemble verifier.rule=naive_bayes        # label-free weights (EM)
    python -m search.run verifier=ensemble verifier.rule=logistic verifier.fit_run=runs/base   # fitted on labels
    lab offline runs/base verifier=ensemble verifier.rule=naive_bayes verifier.fit_run=runs/base

Members are verifier configs (a ``_target_`` and its fields, as in ``conf/verifier/``), each optionally with a
``noise`` config (as in ``conf/noise/``) wrapped around it; every member is built with the task. Each member scores
the candidates; a process member contributes its final (whole-solution) score. The rules (``rule``):

- ``mean``: the mean of the members' scores;
- ``vote``: the share of members whose score is at least ``threshold``;
- ``logistic``: a logistic regression on the members' score logits, fitted on the graded pools of ``fit_run`` (a
  finished run's directory: the labelled split). Cross-fitted: the problems of ``fit_run`` fall in two folds by a hash
  of their id, and a problem of the fit set is scored by the model fitted on the other fold, so no label of a
  problem is used to score that problem; any other problem is scored by the model fitted on all of them.
- ``naive_bayes``: weak supervision without labels. Each member's verdict (score >= ``threshold``) is taken as
  independent given the truth, with a true- and false-positive rate of its own; the rates and the prior are
  estimated by EM (Dawid-Skene) on the members' verdicts over the pools of ``fit_run`` (labels unread), or, without
  ``fit_run``, over the candidates of each call. The score is the posterior P(right | verdicts).

Compute: ``n_params`` is the members' total and ``Scores.tokens`` is chosen so that the ledger's 2 x n_params x tokens
equals the members' own sum of 2 x n_params_m x tokens_m (to the rounding of one token).
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from search.contracts import Candidate, LabError, Problem, Scores, Task
from search.seeding import derive_seed

RULES = ("mean", "vote", "logistic", "naive_bayes")
"""The combination rules (see the module docstring)."""
CLIP = 1e-4
"""Member scores are clipped to [CLIP, 1 - CLIP] before the logit that the logistic rule reads."""


def naive_bayes_em(votes: np.ndarray, iters: int = 200, tol: float = 1e-9, smoothing: float = 0.5) -> dict:
    """Dawid-Skene EM for binary verdicts ``votes`` (candidates x members, 0/1) without labels: each member m has
    TPR_m = P(accept | right), FPR_m = P(accept | wrong), verdicts independent given the truth, and a prior P(right).
    Starts from the vote share as the posterior; ``smoothing`` adds pseudo-counts to every rate (keeps them off 0
    and 1). The latent class is named so that members are better than chance on average (sum TPR >= sum FPR), the
    one assumption that tells right from wrong without labels. Returns tpr, fpr (arrays), prior, iterations."""
    x = np.asarray(votes, float)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"votes must be candidates x members, got shape {x.shape}")
    q = x.mean(axis=1) if len(x) else np.zeros(0)
    tpr = fpr = np.full(x.shape[1], 0.5)
    prior, it = 0.5, 0
    for it in range(1, iters + 1):
        w1, w0 = q.sum(), (1 - q).sum()
        prior = float(np.clip((w1 + smoothing) / (len(q) + 2 * smoothing), 1e-6, 1 - 1e-6))
        new_t = (q @ x + smoothing) / (w1 + 2 * smoothing)
        new_f = ((1 - q) @ x + smoothing) / (w0 + 2 * smoothing)
        q = nb_posterior(x, new_t, new_f, prior)
        done = np.abs(new_t - tpr).max() < tol and np.abs(new_f - fpr).max() < tol
        tpr, fpr = new_t, new_f
        if done:
            break
    if tpr.sum() < fpr.sum():
        tpr, fpr, prior = fpr, tpr, 1 - prior
    return {"tpr": tpr, "fpr": fpr, "prior": prior, "iterations": it}


def nb_posterior(votes: np.ndarray, tpr, fpr, prior: float) -> np.ndarray:
    """P(right | verdicts) for each row of ``votes`` under naive Bayes with the given member rates and prior."""
    x = np.asarray(votes, float)
    t, f = np.clip(tpr, 1e-6, 1 - 1e-6), np.clip(fpr, 1e-6, 1 - 1e-6)
    llr = np.log(prior / (1 - prior)) + x @ np.log(t / f) + (1 - x) @ np.log((1 - t) / (1 - f))
    return 1.0 / (1.0 + np.exp(-np.clip(llr, -700, 700)))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 100) -> np.ndarray:
    """Weights (intercept first) of an L2-penalised logistic regression of ``y`` on the columns of ``X``, by Newton's
    method (the intercept is not penalised). With one class only, the intercept alone (a constant score)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    A = np.c_[np.ones(len(X)), X]
    w = np.zeros(A.shape[1])
    penalty = np.r_[0.0, np.full(X.shape[1], l2)]
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -700, 700)))
        grad = A.T @ (p - y) + penalty * w
        hess = (A * (p * (1 - p))[:, None]).T @ A + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def logits(scores: np.ndarray) -> np.ndarray:
    """The logit of member scores clipped to [CLIP, 1 - CLIP] (the logistic rule's features)."""
    s = np.clip(np.asarray(scores, float), CLIP, 1 - CLIP)
    return np.log(s / (1 - s))


def fold_of(problem_id: str) -> int:
    """The cross-fitting fold (0 or 1) of a problem, from a stable hash of its id."""
    return derive_seed(0, "ensemble-fold", problem_id) % 2


def build_member(spec: Any, task: Task, index: int):
    """One member from its config: a verifier config with ``_target_``, and optionally ``noise`` (a noise config)."""
    from omegaconf import DictConfig, OmegaConf

    from search.build import build

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, dict) or "_target_" not in spec:
        raise LabError(f"verifier.members[{index}] is {spec!r}: each member needs a _target_ naming a verifier class "
                       f"(e.g. {{_target_: verifiers.oracle.OutcomeOracle}}), with an optional noise: {{...}}")
    spec = dict(spec)
    noise = spec.pop("noise", None)
    member = build(OmegaConf.create({f"members[{index}]": spec}), f"members[{index}]", task=task)
    if noise:
        member = build(OmegaConf.create({f"members[{index}].noise": {**noise, "_partial_": True}}),
                       f"members[{index}].noise")(member)
    return member


class Ensemble:
    """An outcome verifier that combines K member verifiers' scores by ``rule``."""

    kind = "outcome"

    def __init__(self, task: Task, members: Sequence[Any], rule: str = "mean", threshold: float = 0.5,
                 fit_run: str | None = None, l2: float = 1.0, em_iters: int = 200, name: str = "ensemble"):
        """``members``: verifier configs (each with ``_target_`` and optionally ``noise``) or built verifiers;
        ``rule``: mean | vote | logistic | naive_bayes; ``threshold``: a member's score at or above it is an accept
        (vote, naive_bayes); ``fit_run``: a finished run's directory whose graded pools fit the logistic rule (needed)
        and the naive-Bayes rates (optional); ``l2``: the logistic penalty; ``em_iters``: most EM iterations."""
        if rule not in RULES:
            raise LabError(f"verifier.rule={rule!r} is not an ensemble rule: choose one of {', '.join(RULES)}")
        if not members:
            raise LabError("verifier.members is empty: give at least one member verifier config")
        if not 0 <= threshold <= 1:
            raise LabError(f"verifier.threshold={threshold} must lie in [0, 1]")
        if rule == "logistic" and not fit_run:
            raise LabError("verifier.rule=logistic needs verifier.fit_run=RUN_DIR: a finished run whose graded pools "
                           "are the labelled split (e.g. lab run hydra.run.dir=runs/base)")
        self.task, self.rule, self.threshold, self.fit_run = task, rule, threshold, fit_run
        self.l2, self.em_iters, self.name = l2, em_iters, name
        self.members = [m if hasattr(m, "score") else build_member(m, task, i) for i, m in enumerate(members)]
        """The member verifiers, built."""
        self.n_params = int(sum(m.n_params for m in self.members))
        self.fitted: dict | None = None
        """What the rule learned from ``fit_run`` (logistic weights per fold, naive-Bayes rates), once scored."""
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """Every member's ``counts()`` (of the member, or of the verifier under its noise), keyed
        ``"INDEX:NAME.KEY"``: a served member's candidates cut at its context, say."""
        out = {}
        for i, m in enumerate(self.members):
            inner = m if callable(getattr(m, "counts", None)) else getattr(m, "verifier", None)
            if callable(getattr(inner, "counts", None)):
                name = getattr(inner, "name", type(inner).__name__)
                out.update({f"{i}:{name}.{k}": int(v) for k, v in inner.counts().items()})
        return out

    def member_scores(self, problem: Problem, candidates: Sequence[Candidate]) -> tuple[np.ndarray, int]:
        """(candidates x members final scores, the tokens to charge so that the FLOPs add up)."""
        cols, weighted, plain = [], 0, 0
        for m in self.members:
            s = m.score(problem, candidates)
            cols.append([float(x) for x in s.final])
            weighted += m.n_params * s.tokens
            plain += s.tokens
        tokens = round(weighted / self.n_params) if self.n_params else plain
        return np.array(cols, float).T.reshape(len(candidates), len(self.members)), int(tokens)

    def _fit(self) -> dict:
        with self._lock:
            if self.fitted is None:
                self.fitted = self._fit_run()
            return self.fitted

    def _fit_run(self) -> dict:
        from pathlib import Path

        from search.engine.stored_pools import load_pools

        _, pools = load_pools(Path(self.fit_run))
        X, y, folds = [], [], []
        for stored in pools:
            if stored.candidates:
                X.append(self.member_scores(stored.problem, stored.candidates)[0])
                y += [bool(c) for c in stored.record["pool"]["correct"]]
                folds += [fold_of(stored.problem.id)] * len(stored.candidates)
        X, y, folds = np.vstack(X), np.asarray(y), np.asarray(folds)
        out: dict = {"problems": {p.problem.id: fold_of(p.problem.id) for p in pools}, "candidates": len(y)}
        if self.rule == "logistic":
            feats = logits(X)
            out["weights"] = {f: fit_logistic(feats[folds != f], y[folds != f], self.l2) for f in (0, 1)}
            out["weights"][None] = fit_logistic(feats, y, self.l2)
        elif self.rule == "naive_bayes":
            out["em"] = naive_bayes_em(X >= self.threshold, self.em_iters)
        return out

    def combine(self, problem: Problem, X: np.ndarray) -> np.ndarray:
        """The ensemble's score of each candidate from its row of member scores."""
        if self.rule == "mean":
            return X.mean(axis=1)
        if self.rule == "vote":
            return (X >= self.threshold).mean(axis=1)
        if self.rule == "logistic":
            fit = self._fit()
            w = fit["weights"][fit["problems"].get(problem.id)]      # fitted without this problem's fold
            return 1.0 / (1.0 + np.exp(-np.clip(w[0] + logits(X) @ w[1:], -700, 700)))
        votes = X >= self.threshold
        em = self._fit()["em"] if self.fit_run else naive_bayes_em(votes, self.em_iters)
        return nb_posterior(votes, em["tpr"], em["fpr"], em["prior"])

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        if not candidates:
            return Scores(steps=())
        X, tokens = self.member_scores(problem, candidates)
        return Scores(steps=tuple((float(min(1.0, max(0.0, s))),) for s in self.combine(problem, X)), tokens=tokens)
