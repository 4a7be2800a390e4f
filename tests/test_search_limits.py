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
        self.params = []

    def generate(self, prompts, params):
        out = []
        for prompt, p in zip(prompts, per_prompt(params, len(prompts))):
            self.prompts.append(prompt)
            self.params.append(p)
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


def run_endless(strategy, problem=PROBLEM):
    """The strategy's selection for ``problem`` on the endless tree, and the fake policy that saw its requests."""
    fake = EndlessPolicy()
    ledger = Ledger(policy_params=fake.n_params)
    return strategy.solve(problem, MeteredPolicy(fake, TASK, ledger), MeteredVerifier(DepthScores(), ledger)), fake


def solve(strategy):
    sel, fake = run_endless(strategy)
    return sel, [p[len(PROBLEM.prompt):].count("\n") for p in fake.prompts]


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


def test_a_continuation_cut_at_the_cap_keeps_its_steps_text_answer_and_a_share_of_tokens():
    from search.contracts import Candidate
    from search.strategies.stepwise import StepSearch

    parent = Candidate(steps=("a=1",), answer=None, text="a=1", prompt_tokens=5, completion_tokens=4,
                       finish_reason="stop")
    cand = Candidate(steps=("a=1", "bb=22", "ccc", "A:5"), answer="5", text="a=1\nbb=22\nccc\nA:5", prompt_tokens=5,
                     completion_tokens=24, finish_reason="stop")
    cut = StepSearch(max_steps=2)._cut(cand, parent, TASK)
    assert cut.steps == ("a=1", "bb=22") and cut.text == "a=1\nbb=22" and cut.answer is None
    assert cut.finish_reason == "length" and cut.prompt_tokens == 5
    # 20 new tokens over 14 new characters, 6 of them kept: 4 + round(20 * 6 / 14) = 4 + 9
    assert cut.completion_tokens == 13
    kept = StepSearch(max_steps=4)._cut(replace_steps(cand, ("A:5",)), parent, TASK)
    assert kept.answer == "5" and kept.steps[-1] == "A:5"


def replace_steps(cand, extra):
    """``cand`` with ``extra`` steps appended, so that it runs one step past a cap of 4 ending on its answer."""
    from dataclasses import replace

    steps = ("a=1", "bb=22", "ccc") + extra + ("more",)
    return replace(cand, steps=steps, text="\n".join(steps), answer=None)


def test_beam_lookahead_goes_greedily_ahead_up_to_the_cap():
    """Lookahead 2 on the endless tree, cap 4 steps: after each round every growing child is continued up to two
    greedy steps (one sample at temperature 0, its own seed per prefix and depth), never past the cap."""
    sel, fake = run_endless(BeamSearch(budget=4, expansions=2, max_steps=4, lookahead=2))
    depths = [p[len(PROBLEM.prompt):].count("\n") for p in fake.prompts]
    greedy = [(d, p) for d, p in zip(depths, fake.params) if p.temperature == 0.0]
    # rounds 1-3 each grow 4 children (2 beams x 2 from round 2 on) at depth 1, 2, 3; each child looks ahead from
    # its own depth, two steps (rounds 1 and 2) or one (round 3, where the next step reaches the cap of 4)
    assert [d for d, _ in greedy] == [1] * 4 + [2] * 4 + [2] * 4 + [3] * 4 + [3] * 4
    assert all(p.n == 1 for _, p in greedy) and len({p.seed for _, p in greedy}) == len(greedy)
    assert sel.extras["rounds"] == 4 and all(len(c.steps) == 4 for c in sel.candidates)


def mcts_trace(**knobs):
    """The prompts an MCTS sends on the endless tree (as the steps of their prefix), and its selection."""
    sel, fake = run_endless(MCTS(expansions=2, max_steps=3, c_uct=1.0, **knobs))
    return [tuple(p[len(PROBLEM.prompt):].split("\n")[:-1]) for p in fake.prompts], sel


def test_mcts_walks_by_uct_on_a_hand_traced_tree():
    """Sequential MCTS, budget 6 (three rollout pairs), no widening, traced by hand. Rollout i of any prefix scores
    0.1 (i = 0) or 0.2 (i = 1) at its last step. Wave 1 expands the root: children s0.0 (value 0.1) and s0.1 (0.2).
    Wave 2: UCT 0.1 + sqrt(ln 2) = 0.93 against 0.2 + sqrt(ln 2) = 1.03 picks s0.1, whose rollouts back up 0.15.
    Wave 3: s0.0 has 0.1 + sqrt(ln 3 / 1) = 1.15 against s0.1's 0.35 / 2 + sqrt(ln 3 / 2) = 0.92: s0.0 (with the
    exploration term's sign flipped it would be s0.1 again). Every rollout is cut at the 3-step cap; the solution
    s0.1 s1.1 s2.1 is found twice and counted once. With budget 8, wave 4 goes two levels down: s0.1 (0.175 +
    sqrt(ln 4 / 2) against s0.0's 0.125 + the same), then its child s1.1 (0.2 + sqrt(ln 3) against 0.1 + the same),
    whose rollouts end at the cap in one step."""
    prefixes, sel = mcts_trace(budget=6, parallel=1, widening=0.0)
    assert prefixes == [(), ("s0.1",), ("s0.0",)]
    assert sel.extras == {"finished": 4, "waves": 3, "root_visits": 3, "tree_children": 2}
    assert sorted(c.text for c in sel.candidates) == ["s0.0\ns1.0\ns2.0", "s0.0\ns1.1\ns2.1", "s0.1\ns1.0\ns2.0",
                                                      "s0.1\ns1.1\ns2.1"]
    assert sorted(sel.scores.steps) == [(0.1, 0.1, 0.1), (0.1, 0.2, 0.2), (0.2, 0.1, 0.1), (0.2, 0.2, 0.2)]
    prefixes, sel = mcts_trace(budget=8, parallel=1, widening=0.0)
    assert prefixes == [(), ("s0.1",), ("s0.0",), ("s0.1", "s1.1")]
    assert sel.extras == {"finished": 5, "waves": 4, "root_visits": 4, "tree_children": 2}
    assert "s0.1\ns1.1\ns2.0" in {c.text for c in sel.candidates}


def test_mcts_progressive_widening_expands_the_root_again():
    """Widening 0.5: the root, visited twice, may be expanded ceil(2 ** 0.5) = 2 times, so wave 2 expands it again
    (its samples meet the same two children, which now have two visits each); wave 3 (ceil(3 ** 0.5) = 2 expansions
    done) descends by UCT to s0.1 (0.2 + sqrt(ln 3 / 2) against 0.1 + the same)."""
    prefixes, sel = mcts_trace(budget=6, parallel=1, widening=0.5)
    assert prefixes == [(), (), ("s0.1",)]
    assert sel.extras == {"finished": 3, "waves": 3, "root_visits": 3, "tree_children": 2}


def test_mcts_walks_of_one_wave_that_meet_share_one_expansion():
    """Parallel 2, budget 4: both walks of wave 1 end at the bare root, which is expanded once (two samples); wave 2
    has two samples left, one walk, and UCT (0.2 + sqrt(ln 3) against 0.1 + sqrt(ln 3)) sends it to s0.1."""
    prefixes, sel = mcts_trace(budget=4, parallel=2, widening=0.0)
    assert prefixes == [(), ("s0.1",)]
    assert sel.extras == {"finished": 3, "waves": 2, "root_visits": 3, "tree_children": 2}


def recorded_params(strategy, problem=PROBLEM):
    """Every SamplingParams a strategy sends on the endless tree for ``problem``."""
    return run_endless(strategy, problem)[1].params


STRATEGIES = {"beam": lambda **kw: BeamSearch(budget=4, expansions=2, max_steps=3, **kw),
              "dvts": lambda **kw: DiverseTreeSearch(budget=4, expansions=2, max_steps=3, **kw),
              "particles": lambda **kw: ParticleFilter(budget=4, max_steps=3, **kw),
              "mcts": lambda **kw: MCTS(budget=6, expansions=2, parallel=1, max_steps=3, **kw)}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_request_seeds_differ_by_problem_and_base_seed_and_sampling_knobs_pass_through(name):
    from dataclasses import replace

    make = STRATEGIES[name]
    here = recorded_params(make(top_p=0.9, temperature=0.7))
    other_problem = recorded_params(make(top_p=0.9, temperature=0.7), replace(PROBLEM, id="another"))
    other_seed = recorded_params(make(top_p=0.9, temperature=0.7, seed=1))
    seeds = {p.seed for p in here}
    assert None not in seeds and not seeds & {p.seed for p in other_problem} and not seeds & {p.seed for p in other_seed}
    assert recorded_params(make(top_p=0.9, temperature=0.7)) == here              # and a rerun is identical
    sampled = [p for p in here if p.temperature != 0.0]
    assert sampled and all(p.top_p == 0.9 and p.temperature == 0.7 for p in sampled)


def test_a_rollout_may_use_the_whole_token_budget_and_a_step_only_its_own():
    rollouts = recorded_params(MCTS(budget=2, expansions=2, parallel=1, max_steps=3, max_tokens=90,
                                    step_max_tokens=20))
    assert [(p.max_tokens, p.stop) for p in rollouts] == [(90, ())]
    steps = recorded_params(BeamSearch(budget=2, expansions=2, max_steps=1, max_tokens=90, step_max_tokens=20))
    assert [(p.max_tokens, p.stop) for p in steps] == [(20, ("\n",))]


def test_progressive_widening_draws_new_samples_when_it_expands_a_node_again():
    """The root's second expansion (widening 0.5, wave 2) must not repeat the first one's request seed, or it
    would draw the same two children again from a real policy."""
    params = recorded_params(MCTS(budget=4, expansions=2, parallel=1, max_steps=3, widening=0.5))
    assert len(params) == 2 and params[0].seed != params[1].seed
