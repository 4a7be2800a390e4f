"""Confidence verifiers: the policy's own token log-probabilities as a score, with no extra model.

    python -m search.run policy.logprobs=20 verifier=confidence verifier.measure=self_certainty
    python -m search.measure policy.logprobs=20 verifier=confidence verifier.measure=group_confidence
    python -m search.confidence_vote RUN_DIR                      # confidence-filtered majority vote at every k

The policy records the logprobs when asked (``policy.logprobs=N``: the sampled token's and the top N of every
generated token), and the generation cache stores them, so re-scoring a pool with another measure generates nothing.
The measures (``measure``), each mapped monotonically into [0, 1] (higher = more confident):

- ``mean_logprob``: the mean log-probability of the generated tokens, as exp(mean) (the geometric-mean token
  probability);
- ``self_certainty`` (Kang et al. 2025): the mean over tokens of KL(uniform || p), the distance of the next-token
  distribution from uniform over the vocabulary; from the top N, the mass outside them is spread evenly over the other
  ``vocab_size`` - N tokens (exact when N >= vocab_size - 1). Reported as 1 - exp(-mean KL);
- ``group_confidence`` (DeepConf's lowest group confidence, Fu et al. 2025): a token's confidence is minus the mean
  of its top-N logprobs; the group confidence is its mean over a sliding window of ``group`` tokens, and the score
  is the lowest window (the whole sample when shorter). Reported as C / (1 + C).

A candidate without logprobs (a policy run without ``policy.logprobs``) is an error naming the fix when ``strict``;
with ``strict: false`` it scores 0.5 and ``missing`` counts it (the contract checker's hand-made probes have none).
The score reads what generation already computed: no verifier tokens are charged (``n_params`` 0).
"""
from __future__ import annotations

import math
import threading
from typing import Sequence

import numpy as np

from search.contracts import Candidate, LabError, Problem, Scores, Task, TokenLogprobs

MEASURES = ("mean_logprob", "self_certainty", "group_confidence")
"""The confidence measures (see the module docstring)."""


def mean_logprob(lp: TokenLogprobs) -> float:
    """exp of the mean log-probability of the generated tokens (1.0 for a sample without tokens)."""
    return math.exp(float(np.mean(lp.token))) if lp.token else 1.0


def self_certainty(lp: TokenLogprobs, vocab_size: int | None) -> float:
    """Mean over tokens of KL(U || p) = -log V - (1/V) sum_j log p_j, from the top N logprobs with the remaining
    mass spread evenly over the V - N other tokens (V = ``vocab_size``, or N when None: the top N renormalised)."""
    if not lp.top:
        return 0.0
    kls = []
    for top in lp.top:
        t = np.asarray(top, float)
        V = max(vocab_size or len(t), len(t))
        rest = V - len(t)
        if rest > 0:
            left = max(1.0 - float(np.exp(t).sum()), 1e-12)
            logs = np.r_[t, np.full(rest, math.log(left / rest))]
        else:
            logs = t - np.log(np.exp(t).sum())
        kls.append(-math.log(V) - float(logs.mean()))
    return 1.0 - math.exp(-max(0.0, float(np.mean(kls))))


def group_confidence(lp: TokenLogprobs, group: int) -> float:
    """DeepConf's lowest group confidence: token confidence c_i = -mean(top-N logprobs at i), averaged over every
    window of ``group`` consecutive tokens, the lowest window kept; C / (1 + C)."""
    if not lp.top:
        return 0.0
    c = np.array([-float(np.mean(t)) if len(t) else 0.0 for t in lp.top])
    g = min(group, len(c))
    windows = np.convolve(c, np.ones(g) / g, mode="valid")
    low = max(0.0, float(windows.min()))
    return low / (1.0 + low)


class Confidence:
    """An outcome verifier that scores a candidate by the policy's confidence in it (``measure``)."""

    kind = "outcome"
    n_params = 0

    def __init__(self, task: Task, measure: str = "mean_logprob", group: int = 8, vocab_size: int | None = None,
                 strict: bool = True, name: str | None = None):
        """``measure``: mean_logprob | self_certainty | group_confidence; ``group``: the window of
        group_confidence, in tokens; ``vocab_size``: the policy's vocabulary size, for self_certainty (None: the top
        N renormalised); ``strict``: a candidate without logprobs is an error (else 0.5, counted in ``missing``)."""
        if measure not in MEASURES:
            raise LabError(f"verifier.measure={measure!r} is not a confidence measure: choose one of "
                           f"{', '.join(MEASURES)}")
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise LabError(f"verifier.group={group!r} must be an integer >= 1 (tokens per window), e.g. 8")
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 2):
            raise LabError(f"verifier.vocab_size={vocab_size!r} must be null or the vocabulary size (>= 2)")
        self.task, self.measure, self.group, self.vocab_size, self.strict = task, measure, group, vocab_size, strict
        self.name = name or f"confidence_{measure}"
        self.missing = 0
        """Candidates scored 0.5 because they carried no logprobs (``strict: false`` only)."""
        self._lock = threading.Lock()

    def confidence(self, lp: TokenLogprobs) -> float:
        """The measure of one candidate's logprobs, in [0, 1]."""
        if self.measure == "mean_logprob":
            value = mean_logprob(lp)
        elif self.measure == "self_certainty":
            value = self_certainty(lp, self.vocab_size)
        else:
            value = group_confidence(lp, self.group)
        return float(min(1.0, max(0.0, value)))

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        out = []
        for i, c in enumerate(candidates):
            if c.logprobs is None:
                if self.strict:
                    raise LabError(f"verifier {self.name}: candidate {i} of problem {problem.id} has no logprobs; "
                                   f"run the policy with policy.logprobs=20 (the generation cache keeps them)")
                with self._lock:
                    self.missing += 1
                out.append((0.5,))
                continue
            out.append((self.confidence(c.logprobs),))
        return Scores(steps=tuple(out))
