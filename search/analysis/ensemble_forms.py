"""Closed forms for an ensemble of K binary (flip) verifiers on an exact oracle, combined into one score.

Every member m accepts a right candidate with probability TPR_m and a wrong one with FPR_m. Members may err together:
in ``verifiers.ensemble_noise`` each member, independently, takes the candidate's *shared* uniform with probability
s = sqrt(rho) and its own uniform otherwise, and accepts when that uniform is below its rate. Two identical members
share it with probability s^2 = rho, so they accept together with probability rho a + (1 - rho) a^2 and the
correlation of their verdicts is exactly rho; candidates stay independent of each other, which is all the pool forms
need.

The ensemble's score is a function of the K verdicts (the rule): ``vote`` (= ``mean`` for 0/1 members) is the share
of members that accept; ``naive_bayes`` is the posterior P(right | verdicts) under the assumed member rates and prior,
i.e. the log-likelihood ratio sum_m [x_m log(TPR_m/FPR_m) + (1 - x_m) log((1-TPR_m)/(1-FPR_m))] put through a
logistic. Either way the score takes finitely many values (levels), with P(level | right) = a and P(level | wrong) = b
found by enumerating the 2^K verdict patterns (``ensemble_levels``). From (a, b) the pool forms are exact:

- argmax given a pool of n samples, c right, with J ~ Hypergeometric(n, c, k) right samples in a k-subset: the chosen
  sample is right with probability sum_j P(J=j) j sum_L a_L int_0^1 (A_<L + a_L t)^(j-1) (B_<L + b_L t)^(k-j) dt
  (one right sample sits at level L, every other sample is at or below L, and a tie at L is broken uniformly:
  E[1/(1+M)] = int_0^1 E[t^M] dt for the M others tied with it). A_<L, B_<L are the chances of a lower level. The
  integrand is a polynomial of degree k-1 in t: Gauss-Legendre with floor(k/2)+1 nodes is exact.
- the accept rule (score >= threshold) is flip noise with TPR_e = sum of a over accepting levels and FPR_e the same of
  b, so ``search.analysis.closed_forms.flip_pool`` gives accept, abstain and its reward.
- the population forms (infinite pool, right-rate p) replace the hypergeometric sum: argmax(k) =
  k p sum_L a_L int_0^1 (G_<L + g_L t)^(k-1) dt with G = p A + (1-p) B.

``vote_rates`` is the majority form written out: TPR_K = P(Bin(K, TPR) >= K/2) for independent identical members, and
the rho-mixture of two binomials for correlated ones.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from search.analysis.closed_forms import _gauss_legendre01, _hypergeom, _pool_args, flip_accuracy, flip_pool

MAX_MEMBERS = 16
"""Most members the enumeration of 2^K verdict patterns accepts (65,536 patterns)."""
RATE_CLIP = 1e-6
"""Assumed member rates are clipped to [RATE_CLIP, 1 - RATE_CLIP] so every log-likelihood ratio stays finite."""


def _rates(tprs, fprs) -> tuple[np.ndarray, np.ndarray]:
    t, f = np.atleast_1d(np.asarray(tprs, float)), np.atleast_1d(np.asarray(fprs, float))
    if t.shape != f.shape or t.ndim != 1 or not 1 <= len(t) <= MAX_MEMBERS:
        raise ValueError(f"need 1..{MAX_MEMBERS} members with one TPR and one FPR each, got {t.tolist()}, {f.tolist()}")
    if not (((0 <= t) & (t <= 1)).all() and ((0 <= f) & (f <= 1)).all()):
        raise ValueError(f"member rates must lie in [0, 1], got TPR {t.tolist()}, FPR {f.tolist()}")
    return t, f


def pattern_probabilities(rates: Sequence[float], rho: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(patterns, probabilities): every 0/1 verdict pattern of the K members (rows, member m in column m) and its
    probability when member m accepts with probability ``rates[m]`` and each member takes the shared uniform with
    probability s = sqrt(``rho``) (verdict correlation rho). Given the shared uniform u the members are independent,
    each accepting with probability s [u < rate_m] + (1 - s) rate_m, which is constant between consecutive sorted
    rates: the integral over u is a finite sum."""
    r = np.atleast_1d(np.asarray(rates, float))
    if not 0 <= rho <= 1:
        raise ValueError(f"rho must lie in [0, 1], got {rho}")
    K, share = len(r), float(np.sqrt(rho))
    patterns = np.array(list(itertools.product((0, 1), repeat=K)), dtype=bool).reshape(-1, K)
    cuts = np.unique(np.r_[0.0, np.clip(r, 0, 1), 1.0])
    probs = np.zeros(len(patterns))
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        if hi <= lo:
            continue
        u = (lo + hi) / 2                                    # every u in (lo, hi) gives the same member chances
        q = share * (u < r) + (1 - share) * r
        probs += (hi - lo) * np.prod(np.where(patterns, q, 1 - q), axis=1)
    return patterns, probs


def rule_scores(patterns: np.ndarray, rule: str, nb_tprs=None, nb_fprs=None, prior: float = 0.5) -> np.ndarray:
    """The ensemble's score of each verdict pattern: ``vote``/``mean`` the share of members that accept;
    ``naive_bayes`` the posterior P(right | pattern) with assumed rates ``nb_tprs``/``nb_fprs`` and ``prior``."""
    x = np.asarray(patterns, bool)
    if rule in ("vote", "mean"):
        return x.mean(axis=1)
    if rule != "naive_bayes":
        raise ValueError(f"no closed form for rule {rule!r}: choose vote, mean or naive_bayes")
    t = np.clip(np.asarray(nb_tprs, float), RATE_CLIP, 1 - RATE_CLIP)
    f = np.clip(np.asarray(nb_fprs, float), RATE_CLIP, 1 - RATE_CLIP)
    pr = min(max(prior, RATE_CLIP), 1 - RATE_CLIP)
    llr = np.log(pr / (1 - pr)) + np.where(x, np.log(t / f), np.log((1 - t) / (1 - f))).sum(axis=1)
    return 1.0 / (1.0 + np.exp(-np.clip(llr, -700, 700)))


def ensemble_levels(tprs, fprs, rule: str = "vote", rho: float = 0.0, nb_tprs=None, nb_fprs=None,
                    prior: float = 0.5, decimals: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, a, b): the distinct scores the ensemble can give, ascending, with P(score = value | right) and
    P(score = value | wrong). ``naive_bayes`` assumes the true rates unless ``nb_tprs``/``nb_fprs`` are given (an
    ensemble whose rates were estimated, by EM say, scores with its estimates while the verdicts follow the truth).
    Scores equal to ``decimals`` places are one level (they tie in the argmax)."""
    t, f = _rates(tprs, fprs)
    patterns, pa = pattern_probabilities(t, rho)
    _, pb = pattern_probabilities(f, rho)
    nb_t = t if nb_tprs is None else np.asarray(nb_tprs, float)
    nb_f = f if nb_fprs is None else np.asarray(nb_fprs, float)
    scores = np.round(rule_scores(patterns, rule, nb_t, nb_f, prior), decimals)
    values, index = np.unique(scores, return_inverse=True)
    return values, np.bincount(index, pa, len(values)), np.bincount(index, pb, len(values))


def vote_rates(members: int, tpr: float, fpr: float, rho: float = 0.0) -> tuple[float, float]:
    """(TPR, FPR) of the majority of ``members`` identical flip verifiers (accept when at least half accept), written
    out: P(Bin(K, TPR) >= K/2) for independent members; with the shared component (each member reads it with
    probability s = sqrt(rho)), the candidate's shared uniform falls below the rate a with probability a, and then
    each member accepts with s + (1 - s) a, else with (1 - s) a, so the rate is
    a P(Bin(K, s + (1-s) a) >= K/2) + (1 - a) P(Bin(K, (1-s) a) >= K/2)."""
    from scipy.stats import binom

    need, s = int(np.ceil(members / 2)), float(np.sqrt(rho))

    def at_least_half(q: float) -> float:
        return float(binom.sf(need - 1, members, q))

    def rate(a: float) -> float:
        return a * at_least_half(s + (1 - s) * a) + (1 - a) * at_least_half((1 - s) * a)

    return rate(tpr), rate(fpr)


def _accepting(values, a, b, threshold: float) -> tuple[float, float]:
    keep = np.asarray(values) >= threshold
    return float(np.clip(np.sum(np.asarray(a)[keep]), 0, 1)), float(np.clip(np.sum(np.asarray(b)[keep]), 0, 1))


def levels_pool(n: int, c: int, values, a, b, ks: Sequence[int], threshold: float = 0.5,
                fp_cost: float = 0.0) -> dict[str, np.ndarray]:
    """Exact expectation over i.i.d. level noise, given a pool of n samples with c right, of the pool estimators:
    ``argmax`` (best-of-k on the scores, ties broken uniformly), and ``accept``, ``abstain``, ``accept_reward`` of the
    accept rule (score >= ``threshold``), aligned with ``ks``. The formula is in the module docstring."""
    n, c, ks = _pool_args(n, c, ks)
    a, b = np.asarray(a, float), np.asarray(b, float)
    tpr_e, fpr_e = _accepting(values, a, b, threshold)
    out = {key: np.asarray(v, float) for key, v in flip_pool(n, c, tpr_e, fpr_e, ks, fp_cost).items()}
    out["argmax"] = np.zeros(len(ks))
    if len(ks) == 0 or c == 0:
        return out
    A, B = np.r_[0.0, np.cumsum(a)[:-1]], np.r_[0.0, np.cumsum(b)[:-1]]     # P(level below L)
    t, w = _gauss_legendre01(int(ks.max()) // 2 + 1)
    jmax = int(min(c, ks.max()))
    H = _hypergeom(n, c, ks, jmax)                                              # (K, J)
    j = np.arange(jmax + 1, dtype=float)
    for i, k in enumerate(ks.tolist()):
        jj = j[1:min(jmax, k) + 1]
        total = np.zeros(len(jj))
        for L in np.nonzero(a > 0)[0]:
            right = A[L] + a[L] * t                                             # (Q,)
            wrong = B[L] + b[L] * t
            total += a[L] * (right[None, :] ** (jj[:, None] - 1) * wrong[None, :] ** (k - jj[:, None])) @ w
        out["argmax"][i] = float((H[i, 1:len(jj) + 1] * jj * total).sum())
    return out


def levels_accuracy(p: float, values, a, b, ks: Sequence[int], threshold: float = 0.5) -> dict[str, np.ndarray]:
    """The same for an infinite population of right-rate p: ``argmax`` = k p sum_L a_L int (G_<L + g_L t)^(k-1) dt
    with G = p A + (1 - p) B, and ``accept`` = ``flip_accuracy`` at the ensemble's accept rates (abstaining)."""
    ks = np.atleast_1d(np.asarray(ks, dtype=np.int64))
    a, b = np.asarray(a, float), np.asarray(b, float)
    g = p * a + (1 - p) * b
    G = np.r_[0.0, np.cumsum(g)[:-1]]
    t, w = _gauss_legendre01(int(ks.max()) // 2 + 1)
    argmax = np.zeros(len(ks))
    for i, k in enumerate(ks.tolist()):
        argmax[i] = sum(k * p * a[L] * ((G[L] + g[L] * t) ** (k - 1)) @ w for L in np.nonzero(a > 0)[0])
    tpr_e, fpr_e = _accepting(values, a, b, threshold)
    return {"argmax": argmax, "accept": flip_accuracy(p, tpr_e, fpr_e, ks, abstain=True)}
