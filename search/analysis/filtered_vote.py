"""Confidence-filtered majority vote (DeepConf's offline filtering): of a k-subset of the pool, keep the share
``keep`` of samples with the highest verifier score (at least one), and take the plurality answer among them.

There is no closed form over subsets (the kept set depends on the ranks inside the subset), so the estimate is a
Monte-Carlo average over random k-subsets with its standard error, as for the weighted vote. Ties in score at the
cut are broken uniformly (a random jitter below the smallest score gap), ties in the vote uniformly (the right class
tied with u others counts 1/(u+1)); malformed answers (None) occupy places but do not vote, and a kept set with no
vote counts as wrong. With ``keep`` = 1 it is plain majority vote (``estimators.majority_at_k``, exactly in
expectation).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

import numpy as np


def filtered_vote_at_k(answers: Sequence[Hashable | None], scores: Sequence[float], correct: Sequence[bool], k: int,
                       keep: float, n_draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(estimate, Monte-Carlo standard error) of the confidence-filtered vote at budget k for one pool."""
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must lie in 1..{n}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} must lie in (0, 1]")
    s = np.asarray(scores, float)
    right = {a for a, ok in zip(answers, correct) if ok and a is not None}
    rng = np.random.default_rng(seed)
    gaps = np.diff(np.unique(s))
    jitter = (gaps.min() if len(gaps) else 1.0) * 1e-3
    m = max(1, math.ceil(keep * k))
    values = np.empty(n_draws)
    for d in range(n_draws):
        subset = rng.choice(n, size=k, replace=False)
        order = subset[np.argsort(-(s[subset] + jitter * rng.random(k)), kind="stable")]
        votes = Counter(answers[i] for i in order[:m] if answers[i] is not None)
        if not votes:
            values[d] = 0.0
            continue
        top = max(votes.values())
        leaders = [a for a, v in votes.items() if v == top]
        values[d] = sum(a in right for a in leaders) / len(leaders)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n_draws)) if n_draws > 1 else 0.0
