"""Noise with known error rates, wrapped around any verifier (outcome or process; process noise is per step).

    python -m search.run noise=flip noise.tpr=0.9 noise.fpr=0.2
    python -m search.run noise=contamination noise.eps=0.1
    python -m search.run noise=spread                      # wrong answers spread wider: over-optimisation

Every draw is a function of (seed, problem id, candidate position in the call, candidate text, step index) only,
so a candidate keeps its fate across budgets and across jobs: a fooled verifier stays fooled for that candidate, as
a weak unit-test suite does. Two samples with the same text at different pool positions draw independently, which is
what the closed forms of ``search.analysis.closed_forms`` assume (i.i.d. noise per sample).

The wrapped verifier's score is read as a label: at least 0.5 counts as "right" (an exact oracle gives 0 or 1).

A noise family is one subclass of ``Noise`` plus one YAML in ``conf/noise/``: the class names its ``families``, its
parameters (``fields``, which become table columns and figure axes) and, where one exists, its closed form
(``predict``), which the runner overlays on every pool whose base verifier is exact (``exact = True``, the oracles).
"""
from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import ClassVar, Sequence

import numpy as np

from search.contracts import Candidate, LabError, Problem, Scores, Verifier
from search.seeding import derive_seed

_NORMAL = NormalDist()


FAMILIES: dict[str, type["Noise"]] = {}
"""Noise family name -> the class that implements it (filled as each subclass is defined)."""


class Noise:
    """Shared mechanics: wrap a verifier, draw seeded uniforms per (candidate, step), map each base score.

    A subclass sets ``families`` and ``fields``, implements ``_map`` and, where it has one, ``predict``."""

    families: ClassVar[tuple[str, ...]] = ()
    """The family names (``params()["noise"]``) this class implements."""
    fields: ClassVar[tuple[str, ...]] = ()
    """Its parameters, as they appear in ``params()``: each becomes a column of a sweep's table."""
    family = "none"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        FAMILIES.update(dict.fromkeys(cls.families, cls))

    def __init__(self, verifier: Verifier, seed: int = 0):
        self.verifier = verifier
        self.seed = seed
        self.kind = verifier.kind
        self.n_params = verifier.n_params
        self.name = f"{getattr(verifier, 'name', type(verifier).__name__)}+{self.family}"

    def _uniforms(self, problem: Problem, i: int, cand: Candidate, step: int) -> tuple[float, float]:
        key = (problem.id, i, cand.text, step)
        # two independent uniforms in (0, 1): never exactly 0, so inverse-CDF transforms stay finite
        return ((derive_seed(self.seed, "u", *key) + 0.5) / 2**31, (derive_seed(self.seed, "v", *key) + 0.5) / 2**31)

    def _map(self, right: bool, u: float, v: float) -> float:
        raise NotImplementedError

    def base_labels(self, problem: Problem, candidates: Sequence[Candidate]) -> list[bool]:
        """What the wrapped verifier says of each whole candidate, read as a label (final score >= 0.5): the
        'right' that the noise flips or blurs. For an exact base verifier this is the rate the closed forms need
        (the process oracle accepts only solutions right at every step, not every right answer)."""
        return [s >= 0.5 for s in self.verifier.score(problem, candidates).final]

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        base = self.verifier.score(problem, candidates)
        steps = tuple(tuple(self._map(s >= 0.5, *self._uniforms(problem, i, cand, j)) for j, s in enumerate(scores))
                      for i, (cand, scores) in enumerate(zip(candidates, base.steps)))
        return Scores(steps=steps, tokens=base.tokens)

    def params(self) -> dict:
        """The noise parameters, as plain fields for records and tables."""
        return {"noise": self.family, "seed": self.seed}

    @classmethod
    def predict(cls, params: dict, p: float, ks: Sequence[int], fp_cost: float = 0.0) -> dict[str, list[float]]:
        """Closed-form predictions for one problem of right-rate p under the noise ``params`` on an exact base
        verifier (an infinite population), keyed by the pool's rule names (``argmax``, ...); empty when the family
        has no closed form."""
        return {}

    @classmethod
    def predict_pool(cls, params: dict, n: int, c: int, ks: Sequence[int],
                     fp_cost: float = 0.0) -> dict[str, list[float]]:
        """The same, conditional on a pool of n samples of which the exact base verifier accepts c: the exact
        expectation over the noise of what the pool estimators measure (unbiased, unlike ``predict`` at c/n).
        This is what the runner records beside every measured curve."""
        return {}


class Flip(Noise):
    """Binary flips: a right candidate is accepted (1) with probability ``tpr``, a wrong one with ``fpr``."""

    families = ("flip",)
    fields = ("tpr", "fpr")
    family = "flip"

    def __init__(self, verifier: Verifier, tpr: float = 1.0, fpr: float = 0.0, seed: int = 0):
        if not (0 <= tpr <= 1 and 0 <= fpr <= 1):
            raise LabError(f"noise flip needs tpr and fpr in [0, 1], got tpr={tpr}, fpr={fpr}")
        super().__init__(verifier, seed)
        self.tpr, self.fpr = tpr, fpr

    def _map(self, right: bool, u: float, v: float) -> float:
        return 1.0 if u < (self.tpr if right else self.fpr) else 0.0

    def params(self) -> dict:
        return {**super().params(), "tpr": self.tpr, "fpr": self.fpr}

    @classmethod
    def predict(cls, params: dict, p: float, ks: Sequence[int], fp_cost: float = 0.0) -> dict[str, list[float]]:
        """Argmax (ties broken uniformly), accept-or-abstain, its abstention rate and its reward."""
        from search.analysis import closed_forms as cf

        tpr, fpr = params["tpr"], params["fpr"]
        return {"argmax": cf.flip_accuracy(p, tpr, fpr, ks, abstain=False).tolist(),
                "accept": cf.flip_accuracy(p, tpr, fpr, ks, abstain=True).tolist(),
                "abstain": cf.flip_abstain_rate(p, tpr, fpr, ks).tolist(),
                "accept_reward": cf.flip_utility(p, tpr, fpr, fp_cost, ks).tolist()}

    @classmethod
    def predict_pool(cls, params: dict, n: int, c: int, ks: Sequence[int],
                     fp_cost: float = 0.0) -> dict[str, list[float]]:
        """``search.analysis.closed_forms.flip_pool``: argmax, accept, abstain and reward given the pool."""
        from search.analysis import closed_forms as cf

        out = cf.flip_pool(n, c, params["tpr"], params["fpr"], ks, fp_cost)
        return {rule: np.asarray(out[rule]).tolist() for rule in ("argmax", "accept", "abstain", "accept_reward")}


class ScoreNoise(Noise):
    """Continuous scores: right candidates score N(mu_right, sigma_right^2), wrong ones N(mu_wrong, sigma_wrong^2),
    except that a fraction ``eps`` of wrong ones is scored like right ones (contamination). Scores are reported
    through the logistic function, which keeps them in (0, 1) without changing any ranking.

    The YAML presets are families of this one mechanism: ``gaussian`` (equal spreads), ``contamination`` (eps > 0)
    and ``spread`` (sigma_wrong > sigma_right, the over-optimisation regime)."""

    families = ("gaussian", "contamination", "spread")
    fields = ("mu_right", "mu_wrong", "sigma_right", "sigma_wrong", "eps")

    def __init__(self, verifier: Verifier, family: str = "gaussian", mu_right: float = 1.0, mu_wrong: float = 0.0,
                 sigma_right: float = 1.0, sigma_wrong: float = 1.0, eps: float = 0.0, seed: int = 0):
        if sigma_right < 0 or sigma_wrong < 0 or not 0 <= eps <= 1:
            raise LabError(f"noise {family} needs sigmas >= 0 and eps in [0, 1], got sigma_right={sigma_right}, "
                           f"sigma_wrong={sigma_wrong}, eps={eps}")
        self.family = family
        super().__init__(verifier, seed)
        self.mu_right, self.mu_wrong = mu_right, mu_wrong
        self.sigma_right, self.sigma_wrong, self.eps = sigma_right, sigma_wrong, eps

    def raw(self, right: bool, u: float, v: float) -> float:
        """The score before squashing: the quantity the closed forms describe."""
        like_right = right or v < self.eps
        mu, sigma = (self.mu_right, self.sigma_right) if like_right else (self.mu_wrong, self.sigma_wrong)
        return mu + sigma * _NORMAL.inv_cdf(u)

    def _map(self, right: bool, u: float, v: float) -> float:
        x = self.raw(right, u, v)
        # The logistic of large |x| rounds to exactly 0 or 1 in floating point, which would create false ties.
        return 1.0 / (1.0 + math.exp(-x)) if abs(x) < 30 else (1.0 - 1e-13 if x > 0 else 1e-13)

    def params(self) -> dict:
        return {**super().params(), "mu_right": self.mu_right, "mu_wrong": self.mu_wrong,
                "sigma_right": self.sigma_right, "sigma_wrong": self.sigma_wrong, "eps": self.eps}

    @classmethod
    def predict(cls, params: dict, p: float, ks: Sequence[int], fp_cost: float = 0.0) -> dict[str, list[float]]:
        """Argmax of k scores drawn from the two (contaminated) Gaussians."""
        from search.analysis import closed_forms as cf

        return {"argmax": cf.score_accuracy(p, ks, **{k: params[k] for k in cls.fields}).tolist()}

    @classmethod
    def predict_pool(cls, params: dict, n: int, c: int, ks: Sequence[int],
                     fp_cost: float = 0.0) -> dict[str, list[float]]:
        """Argmax given the pool (``closed_forms.scores_pool``), and the accept rule (a score >= 0.5, i.e. a raw
        score >= 0), which is flip noise with TPR = P(N(mu_right, sigma_right^2) >= 0) and FPR = eps * TPR +
        (1 - eps) * P(N(mu_wrong, sigma_wrong^2) >= 0)."""
        from search.analysis import closed_forms as cf

        fields = {k: params[k] for k in cls.fields}
        out = {"argmax": np.asarray(cf.scores_pool(n, c, ks, **fields)["argmax"]).tolist()}
        tpr = _above_zero(params["mu_right"], params["sigma_right"])
        fpr = params["eps"] * tpr + (1 - params["eps"]) * _above_zero(params["mu_wrong"], params["sigma_wrong"])
        flips = cf.flip_pool(n, c, tpr, fpr, ks, fp_cost)
        out.update({rule: np.asarray(flips[rule]).tolist() for rule in ("accept", "abstain", "accept_reward")})
        return out


def _above_zero(mu: float, sigma: float) -> float:
    """P(N(mu, sigma^2) >= 0), with sigma 0 a point mass."""
    if sigma == 0:
        return 1.0 if mu >= 0 else 0.0
    return 1.0 - _NORMAL.cdf(-mu / sigma)


def noise_fields() -> tuple[str, ...]:
    """Every noise parameter of every known family, in the order the families were defined (table columns)."""
    return tuple(dict.fromkeys(f for cls in FAMILIES.values() for f in cls.fields))


def predict(params: dict, p: float, ks: Sequence[int], fp_cost: float = 0.0) -> dict[str, list[float]]:
    """The closed forms of the family ``params["noise"]`` for one problem of right-rate p (empty for no noise or a
    family without one)."""
    family = FAMILIES.get(params.get("noise"))
    return family.predict(params, p, ks, fp_cost) if family else {}


def predict_pool(params: dict, n: int, c: int, ks: Sequence[int], fp_cost: float = 0.0) -> dict[str, list[float]]:
    """The closed forms of the family ``params["noise"]`` given a pool of n samples, c of them accepted by the exact
    base verifier (empty for no noise or a family without one). They depend on the pool only through (n, c), so a
    run's problems share at most n + 1 computations: remembered (``_predict_pool``), each call gets its own lists."""
    if params.get("noise") not in FAMILIES:
        return {}
    out = _predict_pool(tuple(sorted(params.items())), n, c, tuple(ks), fp_cost)
    return {rule: list(values) for rule, values in out.items()}


@functools.lru_cache(maxsize=4096)
def _predict_pool(params: tuple, n: int, c: int, ks: tuple, fp_cost: float) -> dict[str, tuple[float, ...]]:
    out = FAMILIES[dict(params)["noise"]].predict_pool(dict(params), n, c, list(ks), fp_cost)
    return {rule: tuple(values) for rule, values in out.items()}


def closed_form_params(verifier) -> dict | None:
    """The noise parameters when ``verifier`` is noise wrapped around an exact verifier (the only case where the
    closed forms describe the curve), else None."""
    if isinstance(verifier, Noise) and getattr(verifier.verifier, "exact", False):
        return verifier.params()
    return None

