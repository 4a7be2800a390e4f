"""The random verifier: the floor every real verifier must beat (its argmax accuracy equals pass@1).

    python -m search.run verifier=random
"""
from __future__ import annotations

from typing import Sequence

from search.contracts import Candidate, Problem, Scores, Task
from search.seeding import derive_seed


class RandomVerifier:
    """Scores each candidate uniformly in [0, 1), drawn from a hash of (seed, problem, candidate position, text), so
    the same seed gives the same scores in every job and on every machine."""

    kind = "outcome"
    n_params = 0
    name = "random"

    def __init__(self, task: Task, seed: int = 0):
        self.task = task
        self.seed = seed

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        return Scores(steps=tuple((derive_seed(self.seed, problem.id, i, c.text) / 2.0**31,) for i, c in enumerate(candidates)))
