"""The step cap of every step-wise strategy on a policy that never stops: solutions end after exactly ``max_steps``
steps, no prefix of ``max_steps`` steps is ever continued, and the answer falls back to the best unfinished node only
when nothing finished. Hand-made, so the expected counts follow from the rules alone."""
from __future__ import annotations

import pytest

from search.contracts import Completion, Generation, Scores, Usage, per_prompt
from search.ledger import Ledger, MeteredPolicy, MeteredVerifier
from search.strategies.beam import BeamSearch
from search.strategies.dvts import DiverseTreeSearch
from search.strategies.mcts import MCTS
from search.strategies.particles import ParticleFilter
from search.tasks.arith import ArithTask

TASK = ArithTask()
PROBLEM = TASK._make(3, (("+", 4), ("*", 2)))


class EndlessPolicy:
    """Writes step ``s<depth>.<i>`` for the i-th sample of a prefix of ``depth`` steps, forever (never an answer);
    to the end of a solution it writes five more steps."""

    model_id, n_params = "endless@test", 10

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, params):
        out = []
        for prompt, p in zip(prompts, per_prompt(params, len(prompts))):
            self.prompts.append(prompt)
            depth = prompt[len(PROBLEM.prompt):].count("\n")
            if "\n" in p.stop:
                texts = [f"s{depth}.{i}" for i in range(p.n)]
            else:
                texts = ["\n".join(f"s{depth + j}.{i}" for j in range(5)) for i in range(p.n)]
            comps = tuple(Completion(t, len(t) + 1, "stop") for t in texts)
            out.append(Generation(comps, Usage(len(prompt) + 1, 0, sum(c.completion_tokens for c in comps))))
        return out


class DepthScores:
    """A process verifier that scores step ``s<d>.<i>`` by its sample index: higher i, higher score."""

    kind, n_params, name = "process", 0, "depth"

    def score(self, problem, candidates):
        return Scores(steps=tuple(tuple(0.1 + 0.1 * int(s.split(".")[1]) for s in c.steps) or (0.0,)
                                  for c in candidates))


def solve(strategy):
    fake = EndlessPolicy()
    ledger = Ledger(policy_params=fake.n_params)
    sel = strategy.solve(PROBLEM, MeteredPolicy(fake, TASK, ledger), MeteredVerifier(DepthScores(), ledger))
    depths = [p[len(PROBLEM.prompt):].count("\n") for p in fake.prompts]
    return sel, depths


@pytest.mark.parametrize("max_steps", [1, 2, 3, 5])
@pytest.mark.parametrize("make", [lambda m: BeamSearch(budget=4, expansions=2, max_steps=m),
                                  lambda m: DiverseTreeSearch(budget=4, expansions=2, max_steps=m),
                                  lambda m: ParticleFilter(budget=4, max_steps=m)],
                         ids=["beam", "dvts", "particles"])
def test_a_search_stops_every_solution_at_max_steps(make, max_steps):
    sel, depths = solve(make(max_steps))
    assert sel.candidates and all(len(c.steps) == max_steps for c in sel.candidates)
    assert max(depths) == max_steps - 1                         # a prefix of max_steps steps is never continued
    assert sorted(set(depths)) == list(range(max_steps))       # one round per step
    assert sel.extras["rounds"] == max_steps and sel.extras["finished"] == len(sel.candidates)
    assert sel.answer is None                                  # nothing ever answered


def test_beam_keeps_the_best_children_on_an_endless_tree():
    # scores grow with the sample index: round 0 keeps s0.3 and s0.2 (the best two of the root's four), round 1 the
    # better child of each (s1.1, scored 0.2 against 0.1), and round 2 ends both at the cap
    sel, _ = solve(BeamSearch(budget=4, expansions=2, max_steps=3))
    assert sorted(c.steps[:2] for c in sel.candidates) == [("s0.2", "s1.1")] * 2 + [("s0.3", "s1.1")] * 2


@pytest.mark.parametrize("max_steps", [1, 3])
def test_mcts_holds_solutions_to_max_steps(max_steps):
    sel, depths = solve(MCTS(budget=40, expansions=2, parallel=1, max_steps=max_steps, widening=0.0))
    assert max(depths) <= max_steps - 1
    assert all(len(c.steps) <= max_steps for c in sel.candidates)
