"""Particle filtering over solution steps, weighted by the process verifier (Puri et al. 2025, as its_hub runs it).

    python -m search.run strategy=particle_filtering verifier=process_oracle strategy.budget=16

``budget`` particles start from the empty solution. Each round extends every unfinished particle by one step (one
policy call for all of them) and scores it; then all ``budget`` particles are resampled (systematic resampling,
seeded) with probabilities softmax(logit(score) / ``temperature``), where a particle's score is its latest
aggregated prefix score (the PRM's view of the solution so far; a finished particle keeps its final score). So a
live particle at 0.9 outweighs one that finished at 0.8, whatever their histories: weights are not products over
steps. The search ends when every particle has finished (or after ``max_steps`` rounds), and the answer is picked
among the finished particles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.contracts import LabError, Problem, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.seeding import derive_seed
from search.strategies.stepwise import StepSearch

SCORE_CLIP = 1e-7
"""Scores are clipped to [SCORE_CLIP, 1 - SCORE_CLIP] before the logit, so an exact 0 or 1 stays finite."""


def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn in proportion to ``weights`` (normalised) with one uniform offset: lower variance than
    multinomial resampling, and every particle of weight >= 1/N survives."""
    n = len(weights)
    positions = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(weights), positions, side="right"), n - 1)


def resampling_probabilities(scores, temperature: float = 1.0) -> np.ndarray:
    """softmax(logit(score) / temperature): each particle's chance per draw, from its latest score alone."""
    s = np.clip(np.asarray(scores, dtype=float), SCORE_CLIP, 1 - SCORE_CLIP)
    logits = np.log(s / (1 - s)) / temperature
    w = np.exp(logits - logits.max())
    return w / w.sum()


@dataclass
class ParticleFilter(StepSearch):
    """Sequential Monte Carlo with the process reward's latest prefix score as the weight."""

    temperature_resample: float = 1.0
    """Softmax temperature of the resampling weights: lower follows the verifier more greedily, higher keeps
    more diversity (the sampling temperature of the policy is ``temperature``)."""

    name = "particle_filtering"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature_resample > 0:
            raise LabError(f"strategy.temperature_resample={self.temperature_resample} must be > 0")

    def solve(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier) -> Selection:
        rng = np.random.default_rng(derive_seed(self.seed, problem.id, "resample"))
        particles = [self.root()] * self.budget
        rounds = 0
        while rounds < self.max_steps and any(not p.finished for p in particles):
            alive = [i for i, p in enumerate(particles) if not p.finished]
            grown = self.expand_and_score(problem, policy, verifier, [particles[i] for i in alive], 1, rounds)
            for i, children in zip(alive, grown):
                particles[i] = children[0]
            rounds += 1
            idx = systematic_resample(resampling_probabilities([p.score for p in particles],
                                                               self.temperature_resample), rng)
            particles = [particles[i] for i in idx]
        finished = [p for p in particles if p.finished]
        return self.select(problem, finished, particles, {"rounds": rounds})
