"""Best-of-k from one pool: draw n samples once, score them, and let the runner evaluate every budget k <= n.

    python -m search.run strategy=best_of_k strategy.budget=64 budgets=[1,4,16,64]

The strategy itself only samples the pool and scores it. The per-budget numbers (coverage, argmax of the verifier,
majority and weighted vote) are the exact subset estimators of ``search.analysis.estimators`` applied by ``search.analysis.pool``, and
the compute charged for budget k is what k samples cost, whatever the pool size.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from search.contracts import LabError, Problem, SamplingParams, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.seeding import derive_seed
from search.strategies.selection import check_selection, select_answer


@dataclass
class BestOfK:
    """Sample a pool, score it, pick by a selection rule."""

    budget: int = 64
    """The budget knob every strategy shares, in samples per problem: here the pool size n. Every k <= n in the
    run's ``budgets`` is evaluated from the one pool."""
    selection: str = "argmax"
    """Which rule gives the strategy's own final answer on the whole pool: ``argmax`` (highest verifier score),
    ``majority`` (most frequent answer) or ``weighted`` (highest summed verifier score). Every rule is evaluated at
    every k regardless; this one only sets ``Selection.answer``."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_tokens: int = 96
    """Most tokens per sample."""
    seed: int = 0
    """Base seed; each problem's request seed is derived from it and the problem id."""

    name = "best_of_k"
    kind = "pool"
    """One pool per problem; the runner evaluates every budget k <= ``budget`` from it."""

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise LabError(f"strategy.budget={self.budget} must be at least 1")
        check_selection(self.selection)

    def check_verifier(self, verifier) -> None:
        """Any verifier will do: best-of-k reads only whole-solution scores."""

    def check_budgets(self, budgets: list[int]) -> None:
        too_big = [k for k in budgets if k > self.budget]
        if too_big or any(k < 1 for k in budgets):
            raise LabError(f"budgets {budgets} must lie in 1..strategy.budget={self.budget}: raise "
                           f"strategy.budget to {max(budgets)} or drop the larger budgets")

    def solve(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier) -> Selection:
        params = SamplingParams(n=self.budget, temperature=self.temperature, top_p=self.top_p,
                                max_tokens=self.max_tokens, seed=derive_seed(self.seed, problem.id))
        pool = tuple(policy.generate(problem, params)[0])
        scores = verifier.score(problem, pool)
        answer = select_answer([c.answer for c in pool], scores.final, self.selection,
                               random.Random(derive_seed(self.seed, problem.id, "ties")))
        return Selection(answer=answer, candidates=pool, scores=scores)
