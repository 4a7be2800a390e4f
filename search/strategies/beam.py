"""Beam search guided by a process verifier.

    python -m search.run strategy=beam_search verifier=process_oracle strategy.budget=16

Every round spends ``budget`` step samples: the active beams share them (``budget // expansions`` beams of
``expansions`` children each once the search is under way), the children are scored, finished ones are set aside,
and the best ``budget // expansions`` unfinished ones become the next beams. The search goes on until no beam is
left to extend (or ``max_steps`` rounds), as search-and-learn's beam search does: a solution that finished badly (a
premature answer, a step cut at ``step_max_tokens``) must not end the search for the others. With ``lookahead > 0`` a child is ranked by the score of its
greedy continuation ``lookahead`` steps further (the continuation is charged; the beam keeps the child itself).
"""
from __future__ import annotations

from dataclasses import dataclass

from search.contracts import LabError, Problem, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.strategies.stepwise import StepSearch


@dataclass
class BeamSearch(StepSearch):
    """Keep the best partial solutions at every step."""

    expansions: int = 4
    """Children per beam per round; the beam width is ``budget // expansions``."""
    lookahead: int = 0
    """Steps of greedy continuation used to rank a child (0: rank by the child's own score)."""

    name = "beam_search"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_expansions(self.expansions)
        if self.lookahead < 0:
            raise LabError(f"strategy.lookahead={self.lookahead} must be >= 0")

    def solve(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier) -> Selection:
        width = self.budget // self.expansions
        active, finished, rounds = [self.root()], [], 0
        while active and rounds < self.max_steps:
            share = [self.budget // len(active) + (i < self.budget % len(active)) for i in range(len(active))]
            children = [c for group in self.expand_and_score(problem, policy, verifier, active, share, rounds)
                        for c in group]
            rounds += 1
            finished += [c for c in children if c.finished]
            growing = [c for c in children if not c.finished]
            if self.lookahead and growing:
                ahead = self.continue_and_score(problem, policy, verifier, growing, ("lookahead", rounds),
                                                self.lookahead)
                rank = {id(c): a.score for c, a in zip(growing, ahead)}
            else:
                rank = {id(c): c.score for c in growing}
            active = sorted(growing, key=lambda c: -rank[id(c)])[:width]
        return self.select(problem, finished, active, {"rounds": rounds, "width": width})
