"""The train-versus-test compute frontier (Jones 2021, "Scaling scaling laws with board games"), from pools.

For each policy checkpoint ``c`` the study has its training FLOPs ``T_c`` and, on the same evaluation problems, a
(problems x k) matrix of a rule's expected accuracy with ``k`` samples of that checkpoint's pool (coverage, majority
vote, a verifier's weighted vote: ``search.analysis.verifier_scaling``), and the test-time FLOPs per problem at each
``k`` by the ledger's rule (``search/ledger.py``): ``F_c(k) = 2 x N_c x (prompt tokens + k x mean completion
tokens)`` plus the verifier's ``2 x N_v x tokens`` when one scores the candidates.

An iso-accuracy contour at target ``a`` is, per checkpoint, the least test FLOPs at which its mean curve reaches
``a``; the trade-off is the slope ``b`` of ``log10 F*`` on ``log10 T`` along the contours' compute-efficient points,
one slope shared by every target (each target its own intercept). ``2 ** -b`` is how many times more test-time
compute replaces one doubling of training compute. Its interval resamples problems (every checkpoint's matrix with
the same problems, as they were measured) and refits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Checkpoint:
    """One policy checkpoint of the frontier."""

    name: str
    """Its label (size and step, e.g. ``h64-step-00300``)."""
    size: str
    """The policy size it belongs to (checkpoints of one size are one training run)."""
    train_flops: float
    """Training FLOPs so far: 6 x parameters x training tokens."""
    test_flops: np.ndarray
    """Mean test-time FLOPs per problem at k = 1..max_k (policy and, when it scores, verifier)."""


def flops_at_k(n_params: int, prompt_tokens: Sequence[float], completion_tokens: Sequence[float],
                     n_samples: Sequence[int], ks: Sequence[int], verifier_flops_per_sample: float = 0.0) -> np.ndarray:
    """Mean over problems of the test-time FLOPs of k samples: ``2 x n_params x (prompt + k x completion / n)`` per
    problem (one request's prompt, the pool's mean completion), plus ``k x verifier_flops_per_sample``."""
    prompt = np.asarray(prompt_tokens, float)
    per_sample = np.asarray(completion_tokens, float) / np.asarray(n_samples, float)
    ks = np.asarray(ks, float)
    policy = 2.0 * n_params * (prompt[:, None] + ks[None, :] * per_sample[:, None])
    return policy.mean(axis=0) + ks * verifier_flops_per_sample


def crossing(accuracy: Sequence[float], flops: Sequence[float], target: float) -> tuple[float | None, str]:
    """The least test FLOPs at which a mean accuracy curve (over increasing k) reaches ``target``, interpolated
    linearly in log FLOPs between the last k below it and the first at or above it. Returns (flops, status):
    ``reached``; ``at_first`` when the curve starts at or above the target (the contour lies at or below the cheapest
    point measured: flops is that point, an upper bound); ``never`` (flops None)."""
    acc, f = np.asarray(accuracy, float), np.asarray(flops, float)
    above = np.flatnonzero(acc >= target)
    if not len(above):
        return None, "never"
    j = int(above[0])
    if j == 0:
        return float(f[0]), "at_first"
    a0, a1 = acc[j - 1], acc[j]
    w = (target - a0) / (a1 - a0)
    return float(10 ** (np.log10(f[j - 1]) + w * (np.log10(f[j]) - np.log10(f[j - 1])))), "reached"


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (train, test) FLOPs points: True where no other point needs no more of both and less of one."""
    out = []
    for i, (t, f) in enumerate(points):
        dominated = any(t2 <= t and f2 <= f and (t2 < t or f2 < f) for j, (t2, f2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def contours(checkpoints: Sequence[Checkpoint], curves: Sequence[Sequence[float]],
             targets: Sequence[float]) -> list[dict]:
    """One row per (target, checkpoint): its training FLOPs, the least test FLOPs reaching the target, the status
    (``crossing``) and whether it is compute-efficient among the checkpoints that reach it (``pareto``). A checkpoint
    already at the target at k = 1 competes at its k = 1 cost (at most what it needs), so a small checkpoint that
    gets there with one sample rules out bigger ones that need more of both computes."""
    rows = []
    for target in targets:
        found = [(c, *crossing(curve, c.test_flops, target)) for c, curve in zip(checkpoints, curves)]
        reached = [(c, f) for c, f, status in found if status != "never"]
        efficient = dict(zip([c.name for c, _ in reached], pareto([(c.train_flops, f) for c, f in reached])))
        rows += [{"target": float(target), "checkpoint": c.name, "size": c.size, "train_flops": c.train_flops,
                  "test_flops": f, "status": status, "pareto": efficient.get(c.name, False)}
                 for c, f, status in found]
    return rows


def fit_tradeoff(rows: Sequence[dict], min_points: int = 3) -> dict:
    """The common slope ``b`` of log10 test FLOPs on log10 train FLOPs over the compute-efficient contour points that
    cross the target (not those already at it with one sample), an intercept per target (least squares within
    targets; a target needs two such points at different training FLOPs to count). ``multiple_per_doubling`` =
    ``2 ** -b``. Slope None with fewer than ``min_points`` points in all (two points give a line, not a fit)."""
    by_target: dict[float, list[tuple[float, float]]] = {}
    for r in rows:
        if r["pareto"] and r["status"] == "reached":
            by_target.setdefault(r["target"], []).append((np.log10(r["train_flops"]), np.log10(r["test_flops"])))
    used = {t: np.array(p) for t, p in by_target.items() if len({x for x, _ in p}) >= 2}
    if sum(len(p) for p in used.values()) < max(min_points, 2):
        return {"slope": None, "multiple_per_doubling": None, "intercepts": {}, "n_points": 0, "n_targets": 0}
    sxy = sum(float(((p[:, 0] - p[:, 0].mean()) * (p[:, 1] - p[:, 1].mean())).sum()) for p in used.values())
    sxx = sum(float(((p[:, 0] - p[:, 0].mean()) ** 2).sum()) for p in used.values())
    slope = sxy / sxx
    intercepts = {float(t): float(p[:, 1].mean() - slope * p[:, 0].mean()) for t, p in used.items()}
    return {"slope": slope, "multiple_per_doubling": float(2 ** -slope), "intercepts": intercepts,
            "n_points": int(sum(len(p) for p in used.values())), "n_targets": len(used)}


def frontier_fit(checkpoints: Sequence[Checkpoint], matrices: Sequence[np.ndarray], targets: Sequence[float],
                 resamples: int = 1000, seed: int = 0) -> tuple[list[dict], dict]:
    """The contour rows and the fitted trade-off of mean curves of ``matrices`` (one (problems x k) matrix per
    checkpoint, the same problems in the same order), with 95% percentile intervals of the slope and the multiple
    from ``resamples`` bootstrap resamples of the problems (a resample whose fit has no slope is skipped; the
    number used is reported)."""
    rows = contours(checkpoints, [m.mean(axis=0) for m in matrices], targets)
    fit = fit_tradeoff(rows)
    n = matrices[0].shape[0]
    if any(m.shape[0] != n for m in matrices):
        raise ValueError("every checkpoint's matrix must hold the same problems")
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        s = fit_tradeoff(contours(checkpoints, [m[idx].mean(axis=0) for m in matrices], targets))["slope"]
        if s is not None:
            slopes.append(s)
    if slopes and fit["slope"] is not None:
        lo, hi = np.percentile(slopes, [2.5, 97.5])
        fit.update(slope_ci_low=float(lo), slope_ci_high=float(hi),
                   multiple_ci_low=float(2 ** -hi), multiple_ci_high=float(2 ** -lo))
    fit["resamples_used"] = len(slopes)
    return rows, fit


def accuracy_grid(checkpoints: Sequence[Checkpoint], summaries: Mapping[str, "object"]) -> list[dict]:
    """Tidy rows of the grid of accuracy over (training FLOPs, test FLOPs): one per checkpoint and k, from each
    checkpoint's curve summary (``verifier_scaling.curve_summary``: k, accuracy, ci_low, ci_high)."""
    rows = []
    for c in checkpoints:
        s = summaries[c.name]
        rows += [{"checkpoint": c.name, "size": c.size, "train_flops": c.train_flops, "k": int(k),
                  "test_flops": float(c.test_flops[i]), "accuracy": float(a), "ci_low": float(lo), "ci_high": float(hi)}
                 for i, (k, a, lo, hi) in enumerate(zip(s["k"], s["accuracy"], s["ci_low"], s["ci_high"]))]
    return rows
