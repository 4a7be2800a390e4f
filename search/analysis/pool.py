"""Evaluate one graded, scored pool at every budget k <= n (sample once, evaluate every budget).

Each figure is the exact average over all k-subsets of the pool (``search.analysis.estimators``), except weighted vote,
which has no closed form and is a Monte-Carlo average with its standard error. The compute charged for budget k is
what a fresh request for k samples costs: the prompt once plus k times the pool's mean completion length (and k
verifier scorings), whatever n is.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from search.analysis import estimators
from search.ledger import policy_flops, verifier_flops

RULES = ("coverage", "argmax", "majority", "weighted", "accept")
"""The selection rules evaluated on every pool: pass@k, best-of-k by verifier score, plurality vote, vote weighted
by verifier score, and a uniform pick among the samples the verifier accepts (score >= 0.5), abstaining when it
accepts none (the accuracy of rejection sampling with budget k, which stops at the first accept)."""
OUTCOMES = ("accept_reward", "abstain", "false_positive")
"""Per-k figures of the accept rule: reward (+1 right, -fp_cost accepted-but-wrong, 0 abstain), abstention rate,
and the rate of answering with an accepted wrong sample."""
ACCEPT_THRESHOLD = 0.5
"""A verifier score at or above this accepts a sample."""


def evaluate_pool(answers: Sequence[str | None], correct: Sequence[bool], scores: Sequence[float],
                  ks: Sequence[int], *, prompt_tokens: int, completion_tokens: Sequence[int],
                  verifier_tokens: int, policy_params: int, verifier_params: int,
                  fp_cost: float = 0.0, weighted_draws: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """Per-k figures for one problem's pool, as lists aligned with ``ks``.

    ``answers``/``correct``/``scores``/``completion_tokens`` describe the n samples; ``scores`` are the verifier's
    whole-solution scores; ``verifier_tokens`` is what scoring the whole pool cost."""
    n = len(answers)
    if not (len(correct) == len(scores) == len(completion_tokens) == n):
        raise ValueError("answers, correct, scores and completion_tokens must describe the same pool")
    c = int(sum(bool(x) for x in correct))
    rewards = [1.0 if x else 0.0 for x in correct]
    out: dict[str, list[float]] = {"k": [int(k) for k in ks]}
    out["coverage"] = [estimators.pass_at_k(n, c, k) for k in ks]
    out["argmax"] = [float(x) for x in estimators.best_of_k_curve(scores, rewards, ks)]
    out["majority"] = [float(x) for x in estimators.majority_curve(answers, correct, ks)]
    weighted, weighted_se = estimators.weighted_vote_curve(answers, scores, correct, ks, n_draws=weighted_draws,
                                                           seed=seed)
    out["weighted"] = [float(w) for w in weighted]
    out["weighted_mc_se"] = [float(se) for se in weighted_se]
    accepted = [s >= ACCEPT_THRESHOLD for s in scores]
    accept = [estimators.binary_accept_at_k(accepted, correct, k, fp_cost) for k in ks]
    out["accept"] = [a for a, _, _ in accept]
    out["accept_reward"] = [r for _, r, _ in accept]
    out["abstain"] = [z for _, _, z in accept]
    out["false_positive"] = [1.0 - a - z for a, _, z in accept]
    mean_completion = float(np.mean(completion_tokens)) if n else 0.0
    mean_verifier = verifier_tokens / n if n else 0.0
    out["policy_tokens"] = [prompt_tokens + k * mean_completion for k in ks]
    out["verifier_tokens"] = [k * mean_verifier for k in ks]
    out["flops"] = [policy_flops(policy_params, prompt_tokens, k * mean_completion)
                    + verifier_flops(verifier_params, k * mean_verifier) for k in ks]
    return out
