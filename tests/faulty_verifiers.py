"""Verifiers with the mistakes plug-in authors make, one per ``fault``: what the contract checker and the lab must
catch, each with one line naming the rule, the candidate or the problem, and the fix (tests/test_plugins.py).

Chosen from tests/conf/verifier/faulty.yaml (``hydra.searchpath=[file://TESTS/conf] verifier=faulty
verifier.fault=NAME``) or built directly. ``noise`` adds unclipped noise, seeded the right way (so only the range
rule can catch it) unless the fault is one of the seeding mistakes.
"""
from __future__ import annotations

import random

from search.contracts import Scores
from search.seeding import derive_seed

FAULTS = ("none", "raise_unfinished", "flat", "count", "nan_unfinished", "global_random", "hash_seed")
"""``none``: a correct outcome verifier; ``raise_unfinished``: score raises on a candidate without an answer;
``flat``: a flat tuple of floats instead of one tuple per candidate; ``count``: one row short; ``nan_unfinished``:
NaN for a candidate without an answer; ``global_random``: noise from the global random module; ``hash_seed``: noise
seeded from hash(problem.id), salted per process."""


class Faulty:
    """An outcome verifier: 0.9 for a candidate with an answer, 0.1 without, plus ``noise`` x a draw in [-1, 1]
    (not clipped), with the chosen ``fault``."""

    kind = "outcome"
    n_params = 0
    name = "faulty"

    def __init__(self, task, fault: str = "none", noise: float = 0.0, seed: int = 0, fail_on: str = ""):
        """``fail_on``: a problem id; the fault shows only on that problem, on every candidate (when empty: on every
        problem, on the candidates without an answer for the answer faults)."""
        assert fault in FAULTS, fault
        self.task, self.fault, self.noise, self.seed, self.fail_on = task, fault, noise, seed, fail_on

    def _draw(self, problem, i, cand) -> float:
        if self.fault == "global_random":
            return random.uniform(-1, 1)
        if self.fault == "hash_seed":
            return random.Random(hash(problem.id) + i).uniform(-1, 1)
        return derive_seed(self.seed, problem.id, i, cand.text) / 2.0**30 - 1.0

    def score(self, problem, candidates):
        faulty = self.fault != "none" and self.fail_on in ("", problem.id)
        rows = []
        for i, cand in enumerate(candidates):
            # on its chosen problem the fault hits every candidate; elsewhere only those without an answer
            hit = faulty and (cand.answer is None or self.fail_on == problem.id)
            if hit and self.fault == "raise_unfinished":
                raise KeyError("confidence")        # a lookup that only some candidates survive
            base = 0.9 if cand.answer is not None else 0.1
            value = base + self.noise * self._draw(problem, i, cand) if self.noise else base
            if hit and self.fault == "nan_unfinished":
                value = float("nan")
            rows.append((value,))
        if faulty and self.fault == "flat":
            return Scores(steps=tuple(r[0] for r in rows))
        if faulty and self.fault == "count" and rows:
            rows = rows[:-1]
        return Scores(steps=tuple(rows))
