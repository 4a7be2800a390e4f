"""The coverage power-law fit: it recovers a known law, predicts its tail, and refuses too few points."""
import numpy as np
import pytest

from search.analysis.fits import fit_coverage_power_law


def test_fit_recovers_an_exact_exponentiated_power_law():
    ks = np.array([1, 2, 4, 8, 16, 32, 64])
    cov = np.exp(-0.6 * ks**-0.7)
    fit = fit_coverage_power_law(ks, cov, fit_max_k=8)
    assert fit.a == pytest.approx(-0.6) and fit.b == pytest.approx(-0.7) and fit.fit_ks == (1, 2, 4, 8)
    assert np.allclose(fit.predict(ks[4:]), cov[4:])


def test_fit_on_sampled_pools_predicts_the_tail_within_noise():
    """Problems with Beta-distributed pass@1: the exact pass@k average is close to (not exactly) a power law."""
    rng = np.random.default_rng(0)
    p = rng.beta(0.8, 0.7, size=5000)
    ks = np.array([1, 2, 4, 8, 16, 32, 64])
    cov = np.array([np.mean(1 - (1 - p) ** k) for k in ks])
    fit = fit_coverage_power_law(ks, cov, fit_max_k=8)
    assert fit.b < 0 and fit.a < 0
    assert np.max(np.abs(fit.predict(ks[4:]) - cov[4:])) < 0.05


def test_fit_needs_two_usable_budgets():
    with pytest.raises(ValueError, match="at least two budgets"):
        fit_coverage_power_law([1, 16], [0.5, 0.9], fit_max_k=8)
    with pytest.raises(ValueError, match="at least two budgets"):
        fit_coverage_power_law([1, 2], [1.0, 1.0], fit_max_k=8)
