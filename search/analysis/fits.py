"""Scaling-law fits (ESTIMATORS.md): coverage against k as an exponentiated power law, fitted on small k and used
to predict the tail.

    fit = fit_coverage_power_law(ks, coverage, fit_max_k=8)
    fit.predict([16, 32, 64])            # exp(a * k^b)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PowerLawFit:
    """``log(coverage) = a * k^b``: a < 0 and b < 0 when coverage rises towards 1."""

    a: float
    """Log-coverage at k = 1 (so exp(a) is the fitted pass@1)."""
    b: float
    """Exponent: how fast the missing log-coverage shrinks with k (more negative is faster)."""
    fit_ks: tuple[int, ...]
    """The budgets the fit used."""

    def predict(self, ks: Sequence[float]) -> np.ndarray:
        """Fitted coverage at each k."""
        return np.exp(self.a * np.asarray(ks, dtype=float) ** self.b)


def fit_coverage_power_law(ks: Sequence[int], coverage: Sequence[float], fit_max_k: int = 8) -> PowerLawFit:
    """Least squares of ``log(-log coverage) = log(-a) + b log k`` over the budgets k <= ``fit_max_k`` whose
    coverage lies strictly between 0 and 1 (a straight line in those coordinates is the exponentiated power law)."""
    ks = np.asarray(ks, dtype=float)
    cov = np.asarray(coverage, dtype=float)
    use = (ks <= fit_max_k) & (cov > 0) & (cov < 1)
    if use.sum() < 2:
        raise ValueError(f"a power-law fit needs at least two budgets k <= {fit_max_k} with 0 < coverage < 1; "
                         f"got {int(use.sum())}: raise fit_max_k or add small budgets")
    b, log_minus_a = np.polyfit(np.log(ks[use]), np.log(-np.log(cov[use])), 1)
    return PowerLawFit(a=-float(np.exp(log_minus_a)), b=float(b), fit_ks=tuple(int(k) for k in ks[use]))
