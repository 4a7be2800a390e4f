"""Closed forms for noisy verifiers (ESTIMATORS.md), per problem; average them over problems.

Notation: p = chance a sample is right; TPR = P(accept | right); FPR = P(accept | wrong); q1 = p TPR,
q0 = (1-p) FPR, r = 1 - q1 - q0, PPV = q1 / (q1 + q0). Every function takes an array of budgets ``ks``.
Which form belongs to which noise family is said by the family itself (``verifiers.noise``, its ``predict``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _flip_terms(p: float, tpr: float, fpr: float) -> tuple[float, float]:
    """(r, PPV): the chance a sample is rejected, and the chance an accepted sample is right."""
    q1, q0 = p * tpr, (1 - p) * fpr
    return 1.0 - q1 - q0, (q1 / (q1 + q0) if q1 + q0 > 0 else 0.0)


def flip_accuracy(p: float, tpr: float, fpr: float, ks: Sequence[int], abstain: bool) -> np.ndarray:
    """Best-of-k with a binary verifier, uniform pick among accepted samples. With ``abstain`` an empty accept set
    scores 0: ``PPV (1 - r^k)``; without, a random sample is taken: ``+ r^(k-1) p (1 - TPR)`` (this is argmax with
    ties broken uniformly)."""
    ks = np.asarray(ks, dtype=float)
    r, ppv = _flip_terms(p, tpr, fpr)
    acc = ppv * (1 - r**ks)
    if not abstain:
        acc = acc + r ** (ks - 1) * p * (1 - tpr)
    return acc


def flip_abstain_rate(p: float, tpr: float, fpr: float, ks: Sequence[int]) -> np.ndarray:
    """Chance that no sample of k is accepted: ``r^k``."""
    r, _ = _flip_terms(p, tpr, fpr)
    return r ** np.asarray(ks, dtype=float)


def flip_utility(p: float, tpr: float, fpr: float, cost: float, ks: Sequence[int]) -> np.ndarray:
    """Expected reward with +1 for a right answer, -cost for an accepted wrong one, 0 for abstaining:
    ``v (1 - r^k)`` with ``v = PPV (1 + cost) - cost``."""
    r, ppv = _flip_terms(p, tpr, fpr)
    return (ppv * (1 + cost) - cost) * (1 - r ** np.asarray(ks, dtype=float))


def rejection_sampling_cost(p: float, tpr: float, fpr: float, ks: Sequence[int]) -> np.ndarray:
    """Expected samples drawn when stopping at the first accept, at most k: ``(1 - r^k) / (1 - r)``."""
    r, _ = _flip_terms(p, tpr, fpr)
    ks = np.asarray(ks, dtype=float)
    return ks if r >= 1 else (1 - r**ks) / (1 - r)


def score_accuracy(p: float, ks: Sequence[int], mu_right: float = 1.0, mu_wrong: float = 0.0,
                   sigma_right: float = 1.0, sigma_wrong: float = 1.0, eps: float = 0.0,
                   grid: int = 20001) -> np.ndarray:
    """Argmax of k Gaussian scores: right ~ N(mu_right, sigma_right^2), wrong ~ N(mu_wrong, sigma_wrong^2) except a
    fraction eps of wrong ones scored like right ones:
    ``accuracy(k) = integral k p f1(s) [p F1(s) + (1-p) F0(s)]^(k-1) ds`` with F0 the contaminated mixture.
    Point masses (both sigmas 0) reduce to binary flips with TPR = 1 and FPR = eps."""
    from scipy.stats import norm

    ks = np.asarray(ks, dtype=float)
    if sigma_right == 0 and sigma_wrong == 0:
        return flip_accuracy(p, 1.0, eps, ks, abstain=False)
    if sigma_right == 0 or sigma_wrong == 0:
        raise ValueError("score_accuracy needs both sigmas > 0, or both 0")
    lo = min(mu_right - 12 * sigma_right, mu_wrong - 12 * sigma_wrong)
    hi = max(mu_right + 12 * sigma_right, mu_wrong + 12 * sigma_wrong)
    s = np.linspace(lo, hi, grid)
    f1, cdf1 = norm.pdf(s, mu_right, sigma_right), norm.cdf(s, mu_right, sigma_right)
    cdf0 = eps * cdf1 + (1 - eps) * norm.cdf(s, mu_wrong, sigma_wrong)
    below = np.clip(p * cdf1 + (1 - p) * cdf0, 1e-300, 1.0)
    # G^(k-1) in log space: G is within 1e-300 of 0 far left, where f1 is 0 anyway.
    integrand = ks[:, None] * p * f1[None, :] * np.exp((ks[:, None] - 1) * np.log(below)[None, :])
    return np.trapezoid(integrand, s, axis=1)


def best_of_n_kl(n: Sequence[int]) -> np.ndarray:
    """KL divergence of best-of-n sampling from the base policy: ``log n - (n-1)/n``."""
    n = np.asarray(n, dtype=float)
    return np.log(n) - (n - 1) / n
