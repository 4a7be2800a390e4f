"""Noise families for ensembles of weak verifiers: flip members whose errors can be correlated.

    python -m search.run noise=ensemble_flip noise.members=5 noise.tpr=0.7 noise.fpr=0.3 noise.rho=0.5
    python -m search.run -m +sweep=ensemble                    # K members x correlation, closed forms dashed

- ``correlated_flip``: one member. It accepts a right candidate with probability ``tpr`` and a wrong one with
  ``fpr`` (marginally it is ``flip``), but with probability sqrt(``rho``) it reads the candidate's *shared* uniform
  instead of its own, so members built with the same seed and different ``member`` indices err together: two
  identical members share it with probability rho, and their verdicts have correlation exactly ``rho``. Put several in an ``Ensemble`` (``verifiers/ensemble.py``)
  beside other verifiers.
- ``ensemble_flip``: K = ``members`` identical correlated flip members on the wrapped verifier, combined by ``rule``
  (``vote``: the share that accept; ``naive_bayes``: the posterior P(right | verdicts) with the members' known rates
  and prior 1/2). Its closed forms, for every ``rho``, are those of ``search.analysis.ensemble_forms``.

Draws are a function of (seed, problem id, candidate position, candidate text, step, member) only, like every other
noise in ``verifiers/noise.py``, so a fooled ensemble stays fooled for that candidate in every job.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from search.contracts import Candidate, LabError, Problem, Scores, Verifier
from search.seeding import derive_seed
from verifiers.noise import Flip, Noise

ENSEMBLE_RULES = ("vote", "naive_bayes")
"""Rules of ``ensemble_flip`` (for binary members ``mean`` is ``vote``)."""


def _unit(seed: int, *parts: object) -> float:
    return (derive_seed(seed, *parts) + 0.5) / 2**31


def member_uniform(seed: int, rho: float, member: int, key: tuple) -> float:
    """The uniform that member ``member`` compares with its rate for one (problem, position, text, step) ``key``:
    the key's shared uniform with probability sqrt(``rho``) (a coin of the member's own), else the member's own; two
    members then share it with probability ``rho``, the correlation of their verdicts when their rates are equal."""
    if rho > 0 and _unit(seed, "c", member, *key) < math.sqrt(rho):
        return _unit(seed, "shared", *key)
    return _unit(seed, "u", member, *key)


def _check(tpr: float, fpr: float, rho: float, family: str) -> None:
    if not (0 <= tpr <= 1 and 0 <= fpr <= 1 and 0 <= rho <= 1):
        raise LabError(f"noise {family} needs tpr, fpr and rho in [0, 1], got tpr={tpr}, fpr={fpr}, rho={rho}; "
                       f"e.g. noise.tpr=0.7 noise.fpr=0.3 noise.rho=0.5")


class CorrelatedFlip(Noise):
    """One flip member of an ensemble whose errors share a component with correlation ``rho``."""

    families = ("correlated_flip",)
    fields = ("tpr", "fpr", "rho", "member")
    family = "correlated_flip"

    def __init__(self, verifier: Verifier, tpr: float = 0.9, fpr: float = 0.2, rho: float = 0.0, member: int = 0,
                 seed: int = 0):
        _check(tpr, fpr, rho, self.family)
        if isinstance(member, bool) or not isinstance(member, int) or member < 0:
            raise LabError(f"noise correlated_flip needs member an integer >= 0 (which member of the ensemble), "
                           f"got member={member!r}")
        super().__init__(verifier, seed)
        self.tpr, self.fpr, self.rho, self.member = tpr, fpr, rho, member

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        base = self.verifier.score(problem, candidates)
        steps = tuple(tuple(1.0 if member_uniform(self.seed, self.rho, self.member, (problem.id, i, c.text, j))
                            < (self.tpr if s >= 0.5 else self.fpr) else 0.0 for j, s in enumerate(row))
                      for i, (c, row) in enumerate(zip(candidates, base.steps)))
        return Scores(steps=steps, tokens=base.tokens)

    def params(self) -> dict:
        return {**super().params(), "tpr": self.tpr, "fpr": self.fpr, "rho": self.rho, "member": self.member}

    # marginally one member is binary flip noise: the same closed forms
    predict = Flip.predict
    predict_pool = Flip.predict_pool


class EnsembleFlip(Noise):
    """K identical flip members with correlation ``rho``, combined into one score by ``rule``."""

    families = ("ensemble_flip",)
    fields = ("tpr", "fpr", "rho", "members")
    family = "ensemble_flip"

    def __init__(self, verifier: Verifier, members: int = 3, tpr: float = 0.7, fpr: float = 0.3, rho: float = 0.0,
                 rule: str = "vote", seed: int = 0):
        _check(tpr, fpr, rho, self.family)
        from search.analysis.ensemble_forms import MAX_MEMBERS

        if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= MAX_MEMBERS:
            raise LabError(f"noise ensemble_flip needs members an integer in 1..{MAX_MEMBERS}, got {members!r}; "
                           f"e.g. noise.members=5")
        if rule not in ENSEMBLE_RULES:
            raise LabError(f"noise ensemble_flip has no rule {rule!r}: choose one of {', '.join(ENSEMBLE_RULES)}")
        super().__init__(verifier, seed)
        self.members, self.tpr, self.fpr, self.rho, self.rule = members, tpr, fpr, rho, rule
        t, f = np.clip([tpr, fpr], 1e-6, 1 - 1e-6)
        # naive Bayes with known rates: each accept adds log(t/f), each reject log((1-t)/(1-f)) to the log-odds
        self._llr = (float(np.log(t / f)), float(np.log((1 - t) / (1 - f))))

    def combine(self, verdicts: Sequence[bool]) -> float:
        """The ensemble's score of one candidate from its members' verdicts."""
        accepts = sum(verdicts)
        if self.rule == "vote":
            return accepts / len(verdicts)
        llr = accepts * self._llr[0] + (len(verdicts) - accepts) * self._llr[1]
        return float(1.0 / (1.0 + np.exp(-np.clip(llr, -700, 700))))

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        base = self.verifier.score(problem, candidates)
        steps = []
        for i, (c, row) in enumerate(zip(candidates, base.steps)):
            out = []
            for j, s in enumerate(row):
                rate = self.tpr if s >= 0.5 else self.fpr
                key = (problem.id, i, c.text, j)
                out.append(self.combine([member_uniform(self.seed, self.rho, m, key) < rate
                                         for m in range(self.members)]))
            steps.append(tuple(out))
        return Scores(steps=tuple(steps), tokens=base.tokens)

    def params(self) -> dict:
        return {**super().params(), "tpr": self.tpr, "fpr": self.fpr, "rho": self.rho, "members": self.members,
                "rule": self.rule}

    @staticmethod
    def _levels(params: dict):
        from search.analysis.ensemble_forms import ensemble_levels

        K = params["members"]
        return ensemble_levels([params["tpr"]] * K, [params["fpr"]] * K, params.get("rule", "vote"), params["rho"])

    @classmethod
    def predict(cls, params: dict, p: float, ks: Sequence[int], fp_cost: float = 0.0) -> dict[str, list[float]]:
        """Argmax and accept of the ensemble's score for an infinite population (``levels_accuracy``)."""
        from search.analysis.ensemble_forms import levels_accuracy

        return {rule: np.asarray(v).tolist() for rule, v in levels_accuracy(p, *cls._levels(params), ks).items()}

    @classmethod
    def predict_pool(cls, params: dict, n: int, c: int, ks: Sequence[int],
                     fp_cost: float = 0.0) -> dict[str, list[float]]:
        """Argmax, accept, abstain and reward given the pool (``levels_pool``)."""
        from search.analysis.ensemble_forms import levels_pool

        out = levels_pool(n, c, *cls._levels(params), ks, fp_cost=fp_cost)
        return {rule: np.asarray(v).tolist() for rule, v in out.items()}
