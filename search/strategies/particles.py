"""Particle filtering over solution steps, weighted by the process verifier.

    python -m search.run strategy=particle_filtering verifier=process_oracle strategy.budget=16

``budget`` particles start from the empty solution. Each round extends every unfinished particle by one step (one
policy call for all of them), multiplies its weight by the verifier's aggregated score of the new prefix (floored at
``min_score`` so one zero does not end the population), and, when the effective sample size 1 / sum(w^2) of the
normalised weights falls below ``ess_threshold`` x budget, resamples the particles in proportion to their weights
(systematic resampling, seeded) and resets the weights. Finished particles stay in the population with their
weights. The answer is picked among the finished particles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.contracts import LabError, Problem, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.seeding import derive_seed
from search.strategies.stepwise import StepSearch


def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn in proportion to ``weights`` (normalised) with one uniform offset: lower variance than
    multinomial resampling, and every particle of weight >= 1/N survives."""
    n = len(weights)
    positions = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(weights), positions, side="right"), n - 1)


@dataclass
class ParticleFilter(StepSearch):
    """Sequential Monte Carlo with the process reward as the likelihood."""

    ess_threshold: float = 0.5
    """Resample when the effective sample size drops below this share of the particles (0: never, 1: always)."""
    min_score: float = 1e-3
    """Floor of the score a weight is multiplied by."""

    name = "particle_filtering"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.ess_threshold <= 1 or not 0 < self.min_score <= 1:
            raise LabError(f"strategy.ess_threshold={self.ess_threshold} must lie in [0, 1] and "
                           f"strategy.min_score={self.min_score} in (0, 1]")

    def solve(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier) -> Selection:
        rng = np.random.default_rng(derive_seed(self.seed, problem.id, "resample"))
        particles = [self.root()] * self.budget
        weights = np.full(self.budget, 1.0 / self.budget)
        rounds = resamples = 0
        while rounds < self.max_steps and any(not p.finished for p in particles):
            alive = [i for i, p in enumerate(particles) if not p.finished]
            grown = self.expand_and_score(problem, policy, verifier, [particles[i] for i in alive], 1, rounds)
            for i, children in zip(alive, grown):
                particles[i] = children[0]
                weights[i] *= max(children[0].score, self.min_score)
            weights /= weights.sum()
            rounds += 1
            if 1.0 / np.sum(weights**2) < self.ess_threshold * self.budget:
                idx = systematic_resample(weights, rng)
                particles = [particles[i] for i in idx]
                weights = np.full(self.budget, 1.0 / self.budget)
                resamples += 1
        finished = [p for p in particles if p.finished]
        return self.select(finished, particles, {"rounds": rounds, "resamples": resamples})
