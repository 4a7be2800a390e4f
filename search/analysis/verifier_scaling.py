"""The numbers of the verifier scaling study (``search.verifier_scaling``) for one trained verifier, from its labelled
score table on the evaluation pools (``search.engine.measuring.label_rows``: outcome rows with the grader's verdict,
step rows with the process oracle's prefix label) and the pools' answers.

Pure functions of tables: the best-of-k curve with intervals and where it peaks, the curves of the matched noise
(flip rates at the threshold, Gaussian score noise within a problem), the within-problem AUROC with an interval, and
the generation-verification gap.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from search.analysis.closed_forms import flip_pool, scores_pool
from search.analysis.estimators import (best_of_k_curve, bootstrap_ci, bootstrap_ci_matrix, majority_curve,
                                       weighted_vote_curve)
from search.analysis.verifier_metrics import auroc

THRESHOLD = 0.5
"""The accept threshold of the rates, the matched flip noise and the verdicts of the generation-verification gap."""


def by_problem(table: pd.DataFrame) -> list[pd.DataFrame]:
    """The outcome rows of each problem, candidates in pool order, problems in table order."""
    rows = table[table.level == "outcome"]
    return [part.sort_values("candidate") for _, part in rows.groupby("problem_id", sort=False)]


def argmax_matrix(table: pd.DataFrame, ks: Sequence[int]) -> np.ndarray:
    """(problems x k): the expected accuracy of best-of-k by the verifier's score on each problem's pool (ties
    uniform, ``best_of_k_curve``)."""
    return np.array([best_of_k_curve(p.score, p.label, ks) for p in by_problem(table)])


def weighted_matrix(table: pd.DataFrame, answers: dict[str, Sequence], ks: Sequence[int], draws: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """(problems x k): the verifier-weighted vote (each answer's weight the sum of its candidates' scores;
    ``weighted_vote_curve``, Monte Carlo over ``draws`` k-subsets, exact at k = n) on each problem's pool."""
    return np.array([weighted_vote_curve(answers[p.problem_id.iloc[0]], p.score, p.label.astype(bool), ks, draws,
                                         seed)[0] for p in by_problem(table)])


def baseline_matrices(table: pd.DataFrame, answers: dict[str, Sequence], ks: Sequence[int]) -> dict[str, np.ndarray]:
    """(problems x k) matrices of the verifier-free rules on the same pools: coverage (best-of-k with the exact
    oracle) and majority vote over the candidates' answers (``answers``: problem id -> answers in pool order)."""
    parts = by_problem(table)
    return {"coverage": np.array([best_of_k_curve(p.label, p.label, ks) for p in parts]),
            "majority": np.array([majority_curve(answers[p.problem_id.iloc[0]], p.label.astype(bool), ks)
                                  for p in parts])}


def curve_summary(matrix: np.ndarray, ks: Sequence[int], resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean over problems at each k with its 95% percentile bootstrap interval (problems resampled)."""
    lo, hi = bootstrap_ci_matrix(matrix, resamples, seed=seed)
    return pd.DataFrame({"k": list(ks), "accuracy": matrix.mean(axis=0), "ci_low": lo, "ci_high": hi})


def peak(curve: pd.DataFrame) -> dict:
    """The smallest k where the mean curve is highest, and the accuracy there with its interval."""
    row = curve.iloc[int(np.argmax(curve.accuracy.to_numpy()))]
    return {"peak_k": int(row.k), "peak_accuracy": float(row.accuracy), "peak_ci_low": float(row.ci_low),
            "peak_ci_high": float(row.ci_high)}


def matched_curves(table: pd.DataFrame, quality: dict, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Mean best-of-k curves the matched noise predicts on these pools (closed forms given each pool): ``flip``,
    the exact oracle flipped at the verifier's outcome TPR and FPR at the threshold; ``scores``, Gaussian score noise
    fitted to its within-problem logits (``verifier_metrics.matched_scores``). A key is absent when its fit is."""
    parts = by_problem(table)
    pools = [(len(p), int(p.label.sum())) for p in parts]
    out = {}
    rates = quality["matched_flip"].get("outcome", {})
    if rates.get("tpr") is not None and rates.get("fpr") is not None:
        out["flip"] = np.mean([flip_pool(n, c, rates["tpr"], rates["fpr"], ks)["argmax"] for n, c in pools], axis=0)
    fit = quality.get("matched_scores", {}).get("outcome")
    if fit is not None:
        out["scores"] = np.mean([scores_pool(n, c, ks, **fit)["argmax"] for n, c in pools], axis=0)
    return out


def within_auroc_interval(table: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict:
    """The within-problem AUROC of the solution score (mean over problems with both right and wrong candidates)
    with a 95% bootstrap interval over those problems."""
    values = [auroc(p.score, p.label) for p in by_problem(table)]
    values = [v for v in values if v is not None]
    if not values:
        return {"within_auroc": None, "within_ci_low": None, "within_ci_high": None, "within_problems": 0}
    lo, hi = bootstrap_ci(values, resamples, seed=seed)
    return {"within_auroc": float(np.mean(values)), "within_ci_low": lo, "within_ci_high": hi,
            "within_problems": len(values)}


def generation_verification_gap(table: pd.DataFrame) -> dict:
    """How often the verifier is right about a step or a solution against how often the policy writes it right, on
    the same items of the evaluation pools.

    Steps: every step whose prefix before it is right (the steps the policy wrote from a right state). The policy's
    step accuracy is the share of them it wrote right; the verifier's is the share it judged correctly (score >=
    ``THRESHOLD`` exactly when the step is right). Accepting everything already scores the policy's accuracy, so the
    verifier's balanced accuracy (the mean of its accept rate on right items and reject rate on wrong ones; 0.5 for
    any constant verdict) and its AUROC on the same items are given beside it. Solutions: every candidate; the
    policy's accuracy is the share that are right (pass@1 over candidates), the verifier's the share it judged
    correctly, with the same two companions."""
    steps = table[table.level == "step"].sort_values(["problem_id", "candidate", "step"])
    before = steps.groupby(["problem_id", "candidate"], sort=False).label.shift(1, fill_value=1)
    fresh = steps[before.to_numpy() == 1]
    sols = table[table.level == "outcome"]
    out = {"gap_steps": int(len(fresh)), "gap_solutions": int(len(sols))}
    for level, rows in (("step", fresh), ("solution", sols)):
        if len(rows):
            out[f"policy_{level}_accuracy"] = float(rows.label.mean())
            out.update({f"verifier_{level}_{k}": v for k, v in _verdicts(rows.score, rows.label).items()})
    return out


def _verdicts(scores, labels) -> dict:
    """Accuracy, balanced accuracy and AUROC of the verdicts ``score >= THRESHOLD`` against 0/1 labels."""
    accept, right = np.asarray(scores) >= THRESHOLD, np.asarray(labels) == 1
    rates = [accept[right].mean() if right.any() else None, (~accept[~right]).mean() if (~right).any() else None]
    return {"accuracy": float((accept == right).mean()),
            "balanced_accuracy": float(np.mean(rates)) if None not in rates else None,
            "auroc": auroc(scores, labels)}
