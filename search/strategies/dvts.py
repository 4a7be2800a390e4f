"""Diverse verifier tree search (DVTS): the budget split into independent subtrees, each searched greedily.

    python -m search.run strategy=dvts verifier=process_oracle strategy.budget=16

``budget // expansions`` subtrees each expand their current node into about ``expansions`` children per round (the
remainder of ``budget`` over the subtrees goes one extra child each to the first ones) and keep only the best one, so the subtrees cannot collapse onto one high-scoring prefix as a beam can; every round costs
``budget`` step samples while all subtrees are alive. The answer is picked among the subtrees' finished solutions.
"""
from __future__ import annotations

from dataclasses import dataclass

from search.contracts import Problem, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.strategies.stepwise import StepSearch


@dataclass
class DiverseTreeSearch(StepSearch):
    """Independent greedy subtrees."""

    expansions: int = 4
    """Children per subtree per round; there are ``budget // expansions`` subtrees."""

    name = "dvts"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_expansions(self.expansions)

    def solve(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier) -> Selection:
        subtrees = self.budget // self.expansions
        # every round spends the whole budget while all subtrees are alive: the remainder goes to the first ones
        share = [self.budget // subtrees + (i < self.budget % subtrees) for i in range(subtrees)]
        # round 0: the root's budget children split into the subtrees' first candidates
        first = self.expand_and_score(problem, policy, verifier, [self.root()], self.budget, 0)[0]
        edges = [sum(share[:i]) for i in range(subtrees + 1)]
        groups = [first[edges[i]:edges[i + 1]] for i in range(subtrees)]
        current = [max(g, key=lambda c: c.score) for g in groups]
        rounds = 1
        while rounds < self.max_steps and any(not c.finished for c in current):
            alive = [i for i, c in enumerate(current) if not c.finished]
            grown = self.expand_and_score(problem, policy, verifier, [current[i] for i in alive],
                                          [share[i] for i in alive], rounds)
            for i, children in zip(alive, grown):
                current[i] = max(children, key=lambda c: c.score)
            rounds += 1
        finished = [c for c in current if c.finished]
        return self.select(problem, finished, current, {"rounds": rounds, "subtrees": subtrees})
