"""The step-wise searches on hand-made trees, with no server: a scripted tree policy proposes the next steps of every
partial solution, a scripted process verifier scores each step, and every test knows from the tree alone which
nodes a strategy must expand, keep, prune and return.

The problem is ``Q:3+4*2`` (reference ``3+4=7``, ``7*2=14``, ``A:14``). Trees are written as
``{steps so far: [(next step, weight), ...]}``; a prefix missing from the tree has no continuation (the policy ends
at once). Options are listed worst-first where it matters, so a strategy that keeps "the first k" instead of "the
best k" fails.
"""
from __future__ import annotations

import bisect
import inspect
import itertools
import math
import random
from dataclasses import replace

import numpy as np
import pytest

import search.strategies.particles as particles_module
from search.contracts import (Candidate, Completion, Generation, LabError, SamplingParams, Scores, Usage,
                              per_prompt)
from search.ledger import Ledger, MeteredPolicy, MeteredVerifier
from search.strategies.beam import BeamSearch
from search.strategies.dvts import DiverseTreeSearch
from search.strategies.mcts import MCTS, _TreeNode
from search.strategies.particles import ParticleFilter, systematic_resample
from search.strategies.stepwise import AGGREGATES, Node, StepSearch
from search.tasks.arith import ArithTask
from verifiers.oracle import ProcessOracle

TASK = ArithTask()
PROBLEM = TASK._make(3, (("+", 4), ("*", 2)))       # 3+4=7, 7*2=14, A:14
ROOT = PROBLEM.prompt                                # "Q:3+4*2\n"


# -- fakes -------------------------------------------------------------------------------------------------------
class TreePolicy:
    """A policy over a hand-made tree of steps.

    ``tree`` maps a tuple of steps (the partial solution) to its possible next steps with weights. A request whose
    ``stop`` holds the step delimiter returns one step; without it, the rest of the solution (steps joined by the
    delimiter, following the tree until a prefix with no entry). ``n`` samples are drawn by systematic sampling
    (one uniform offset from ``seed`` and the prompt), so an option of weight share w appears floor or ceil of
    n * w times, in the order the tree lists the options: exact counts whenever n * w is whole, and deterministic
    per (seed, prompt) always. Temperature 0 takes the heaviest option (the first among ties). A sample costs its
    characters + 1 tokens (the +1 is the stop/EOS token); when that exceeds ``max_tokens`` the text is cut to
    ``max_tokens`` characters and the finish reason is ``length``."""

    model_id = "tree@test"
    n_params = 1000

    def __init__(self, tree, prompt=ROOT, delimiter="\n"):
        self.tree = {tuple(k): list(v) for k, v in tree.items()}
        self.prompt, self.delimiter = prompt, delimiter
        self.calls = []                   # (prompt, SamplingParams) per request
        self.served_tokens = []           # completion tokens served per request

    def steps_of(self, prompt):
        assert prompt.startswith(self.prompt), prompt
        rest = prompt[len(self.prompt):]
        assert rest == "" or rest.endswith(self.delimiter), f"a prefix must end with the delimiter: {rest!r}"
        return tuple(rest.split(self.delimiter)[:-1])

    @staticmethod
    def _systematic(options, n, u):
        steps, weights = zip(*options)
        cum = list(itertools.accumulate(w / sum(weights) for w in weights))
        return [steps[min(bisect.bisect_right(cum, (u + i) / n), len(steps) - 1)] for i in range(n)]

    def _paths(self, steps, n, rng, greedy, to_end):
        options = self.tree.get(steps)
        if not options:
            return [()] * n
        firsts = [max(options, key=lambda o: o[1])[0]] * n if greedy else self._systematic(options, n, rng.random())
        if not to_end:
            return [(s,) for s in firsts]
        out = []
        for step, group in itertools.groupby(firsts):
            k = len(list(group))
            out += [(step, *tail) for tail in self._paths(steps + (step,), k, rng, greedy, True)]
        return out

    def generate(self, prompts, params):
        out = []
        for prompt, p in zip(prompts, per_prompt(params, len(prompts))):
            self.calls.append((prompt, p))
            rng = random.Random(f"{p.seed}|{prompt}")
            paths = self._paths(self.steps_of(prompt), p.n, rng, p.temperature == 0,
                                to_end=self.delimiter not in p.stop)
            comps = []
            for path in paths:
                text = self.delimiter.join(path)
                if len(text) + 1 > p.max_tokens:
                    comps.append(Completion(text[:p.max_tokens], p.max_tokens, "length"))
                else:
                    comps.append(Completion(text, len(text) + 1, "stop"))
            served = sum(c.completion_tokens for c in comps)
            self.served_tokens.append(served)
            out.append(Generation(tuple(comps), Usage(len(prompt) + 1, 0, served)))
        return out

    def prompts(self):
        return [prompt for prompt, _ in self.calls]


class StepScores:
    """A process verifier whose score of a step is scripted by the step's text (``default`` otherwise)."""

    kind = "process"
    n_params = 0
    name = "step_scores"

    def __init__(self, scores, default=0.5):
        self.scores, self.default = dict(scores), default
        self.calls = []                   # candidates per call

    def score(self, problem, candidates):
        self.calls.append(len(candidates))
        return Scores(steps=tuple(tuple(self.scores.get(s, self.default) for s in c.steps) or (self.default,)
                                  for c in candidates))


def setup(tree, scores=None, verifier=None):
    fake = TreePolicy(tree)
    ledger = Ledger(policy_params=fake.n_params)
    verifier = verifier or StepScores(scores or {})
    return fake, MeteredPolicy(fake, TASK, ledger), MeteredVerifier(verifier, ledger), ledger


def node(*steps, tokens=0, score=0.0, finished=False, step_scores=()):
    text = "\n".join(steps)
    cand = Candidate(steps=tuple(steps), answer=TASK.extract_answer(text), text=text, prompt_tokens=0,
                     completion_tokens=tokens, finish_reason="stop")
    return Node(cand, tuple(step_scores), score, finished)


def under(prefix_steps):
    """The prompt of a partial solution."""
    return ROOT + "".join(s + "\n" for s in prefix_steps)


# -- the fakes themselves (so that the tests below rest on known behaviour) -------------------------------------
def test_tree_policy_fake_counts_steps_stops_and_truncates():
    fake = TreePolicy({(): [("3+4=8", 1), ("3+4=7", 3)], ("3+4=7",): [("7*2=14", 1)], ("3+4=7", "7*2=14"):
                       [("A:14", 1)]})
    [g] = fake.generate([ROOT], SamplingParams(n=4, stop=("\n",), seed=1, max_tokens=32))
    assert [c.text for c in g.completions] == ["3+4=8", "3+4=7", "3+4=7", "3+4=7"]
    assert g.usage.completion_tokens == 24 and g.usage.prompt_tokens == len("Q:3+4*2\n") + 1
    [g] = fake.generate([under(["3+4=7"])], SamplingParams(n=1, seed=1, max_tokens=32))
    assert g.completions[0] == Completion("7*2=14\nA:14", 12, "stop")
    [g] = fake.generate([under(["3+4=7"])], SamplingParams(n=1, seed=1, max_tokens=9))
    assert g.completions[0] == Completion("7*2=14\nA:", 9, "length")
    [g] = fake.generate([under(["nowhere"])], SamplingParams(n=2, stop=("\n",), seed=1))
    assert [c.text for c in g.completions] == ["", ""]


# -- StepSearch.expand -------------------------------------------------------------------------------------------
TREE = {
    (): [("3+4=8", 1), ("3+4=7", 1)],
    ("3+4=7",): [("7*2=15", 1), ("7*2=14", 1)],
    ("3+4=8",): [("8*2=16", 1)],
    ("3+4=7", "7*2=14"): [("A:14", 1)],
    ("3+4=7", "7*2=15"): [("A:15", 1)],
    ("3+4=8", "8*2=16"): [("A:16", 1)],
}


def test_expand_gives_n_children_per_node_in_one_policy_call():
    fake, policy, _, _ = setup(TREE)
    search = StepSearch(step_max_tokens=20)
    [children] = search.expand(PROBLEM, policy, [search.root()], 4, tag=0)
    assert len(children) == 4 and len(fake.calls) == 1
    assert sorted(c.candidate.steps for c in children) == [("3+4=7",)] * 2 + [("3+4=8",)] * 2
    prompt, params = fake.calls[0]
    assert prompt == ROOT and params.n == 4 and params.stop == ("\n",) and params.max_tokens == 20
    # per-node counts
    a, b = node("3+4=7", tokens=6), node("3+4=8", tokens=6)
    groups = search.expand(PROBLEM, policy, [a, b], [2, 1], tag=1)
    assert [len(g) for g in groups] == [2, 1]
    assert all(c.candidate.steps[:1] == ("3+4=7",) for c in groups[0])
    assert groups[1][0].candidate.steps == ("3+4=8", "8*2=16")
    assert sorted((p, q.n) for p, q in fake.calls[1:]) == [(under(["3+4=7"]), 2), (under(["3+4=8"]), 1)]


def test_expand_nodes_with_one_prefix_share_one_request_and_split_its_samples():
    fake, policy, _, _ = setup(TREE)
    search = StepSearch()
    a1, a2, b = node("3+4=7", tokens=6), node("3+4=7", tokens=6), node("3+4=8", tokens=6)
    groups = search.expand(PROBLEM, policy, [a1, b, a2], 2, tag=0)
    assert len(fake.calls) == 2                      # one request per distinct prefix, not per node
    assert sorted((p, q.n) for p, q in fake.calls) == [(under(["3+4=7"]), 4), (under(["3+4=8"]), 2)]
    assert [len(g) for g in groups] == [2, 2, 2]
    # the two nodes of one prefix get different samples of that request (systematic over 15, 14: two of each)
    seconds = sorted(c.candidate.steps[1] for c in groups[0] + groups[2])
    assert seconds == ["7*2=14", "7*2=14", "7*2=15", "7*2=15"]
    assert groups[0] != groups[2]


def test_expand_seeds_are_distinct_per_prefix_and_round_and_stable():
    fake, policy, _, _ = setup(TREE)
    search = StepSearch(seed=5)
    a, b = node("3+4=7", tokens=6), node("3+4=8", tokens=6)
    search.expand(PROBLEM, policy, [a, b], 1, tag=0)
    search.expand(PROBLEM, policy, [a, b], 1, tag=1)
    search.expand(PROBLEM, policy, [a, b], 1, tag=0)
    seeds = [p.seed for _, p in fake.calls]
    assert len(set(seeds[:4])) == 4                  # (round, prefix) pairs all differ
    assert seeds[4:] == seeds[:2]                    # same round and prefix: same seed (a rerun is identical)
    assert seeds[0] != seeds[2] and seeds[1] != seeds[3]
    other = StepSearch(seed=6)
    other.expand(PROBLEM, policy, [a], 1, tag=0)
    assert fake.calls[-1][1].seed != seeds[0]        # the base seed matters


def test_expand_finished_rules():
    tree = {
        (): [("A:14", 1), ("3+4=7", 1)],              # an answer vs a plain step
        ("3+4=7",): [("7*2=14", 1)],
        ("long",): [("7*2=14+0+0+0", 1)],             # 12 characters: 13 tokens
        ("x1", "x2"): [("x3", 1)],                    # the max_steps chain (no answer anywhere)
        ("x1",): [("x2", 1)],
    }
    fake, policy, _, _ = setup(tree)
    search = StepSearch(step_max_tokens=10, max_steps=3)
    [kids] = search.expand(PROBLEM, policy, [search.root()], 2, tag=0)
    by_step = {c.candidate.steps: c for c in kids}
    assert by_step[("A:14",)].finished and by_step[("A:14",)].candidate.answer == "14"
    assert not by_step[("3+4=7",)].finished
    # the step limit: the cut child is finished (finish reason length), the one that fits is not
    [[cut], [fits]] = search.expand(PROBLEM, policy, [node("long", tokens=5), node("3+4=7", tokens=6)], 1, tag=1)
    assert cut.candidate.finish_reason == "length" and cut.finished
    assert fits.candidate.finish_reason == "stop" and not fits.finished
    # no new step (the prefix has no continuation in the tree)
    [[same]] = search.expand(PROBLEM, policy, [node("3+4=7", "dead end", tokens=9)], 1, tag=2)
    assert same.candidate.steps == ("3+4=7", "dead end") and same.finished and same.candidate.answer is None
    # max_steps=3: a child with 3 steps is finished, one with 2 is not
    [[two]] = search.expand(PROBLEM, policy, [node("x1", tokens=3)], 1, tag=3)
    [[three]] = search.expand(PROBLEM, policy, [node("x1", "x2", tokens=6)], 1, tag=4)
    assert two.candidate.steps == ("x1", "x2") and not two.finished
    assert three.candidate.steps == ("x1", "x2", "x3") and three.finished and three.candidate.answer is None


def test_expand_accumulates_completion_tokens_of_parent_and_child():
    fake, policy, _, _ = setup(TREE)
    search = StepSearch()
    [[child]] = search.expand(PROBLEM, policy, [node("3+4=8", tokens=10)], 1, tag=0)
    assert child.candidate.steps == ("3+4=8", "8*2=16")
    assert child.candidate.completion_tokens == 10 + len("8*2=16") + 1
    # a continuation to the end is capped by what the whole solution may still spend
    search = StepSearch(max_tokens=40)
    [[full]] = search.expand(PROBLEM, policy, [node("3+4=8", tokens=10)], 1, tag=1, to_end=True)
    assert fake.calls[-1][1].max_tokens == 30 and fake.calls[-1][1].stop == ()
    assert full.finished and full.candidate.answer == "16"
    assert full.candidate.completion_tokens == 10 + len("8*2=16\nA:16") + 1


def test_expand_holds_a_solution_to_max_tokens_in_all():
    fake, policy, _, _ = setup(TREE)
    # 6 tokens spent of 10: the next step may take 4 more, so 7*2=14 (7 tokens) is cut and the solution ends
    [[cut]] = StepSearch(max_tokens=10, step_max_tokens=8).expand(PROBLEM, policy, [node("3+4=7", tokens=6)], 1, 0)
    assert fake.calls[-1][1].max_tokens == 4
    assert cut.finished and cut.candidate.finish_reason == "length" and cut.candidate.completion_tokens == 10
    # with room left, the step cap applies
    [[fits]] = StepSearch(max_tokens=96, step_max_tokens=8).expand(PROBLEM, policy, [node("3+4=7", tokens=6)], 1, 1)
    assert fake.calls[-1][1].max_tokens == 8 and not fits.finished
    # a step that ends exactly on the cap (3 tokens left, "x2" + stop = 3) is whole, but the solution is spent
    fake, policy, _, _ = setup({("x1",): [("x2", 1)]})
    [[full]] = StepSearch(max_tokens=10).expand(PROBLEM, policy, [node("x1", tokens=7)], 1, 2)
    assert full.candidate.finish_reason == "stop" and full.candidate.completion_tokens == 10 and full.finished


def test_greedy_expansion_asks_once_and_hands_the_same_step_to_every_child():
    fake, policy, _, _ = setup({(): [("3+4=8", 1), ("3+4=7", 2)]})
    search = StepSearch()
    [kids] = search.expand(PROBLEM, policy, [search.root()], 3, tag=0, greedy=True)
    assert [p.n for _, p in fake.calls] == [1] and fake.calls[0][1].temperature == 0.0
    assert [c.candidate.steps for c in kids] == [("3+4=7",)] * 3


# -- aggregates and scoring ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("aggregate,expected", [("last", 0.8), ("min", 0.2), ("prod", 0.08), ("mean", 0.5)])
def test_aggregates_on_hand_made_step_scores(aggregate, expected):
    assert AGGREGATES[aggregate]((0.5, 0.2, 0.8)) == pytest.approx(expected)
    assert AGGREGATES[aggregate]((0.6,)) == pytest.approx(0.6)
    assert AGGREGATES[aggregate]((0.4, 0.9)) == pytest.approx({"last": 0.9, "min": 0.4, "prod": 0.36,
                                                              "mean": 0.65}[aggregate])
    _, _, verifier, ledger = setup({}, {"s1": 0.5, "s2": 0.2, "s3": 0.8})
    [scored] = StepSearch(aggregate=aggregate).score(PROBLEM, verifier, [node("s1", "s2", "s3")])
    assert scored.step_scores == (0.5, 0.2, 0.8) and scored.score == pytest.approx(expected)
    assert ledger.verifier_calls == 1 and ledger.verifier_candidates == 1


# -- select --------------------------------------------------------------------------------------------------------
def done(answer, score):
    return node(f"A:{answer}", score=score, finished=True, step_scores=(score,))


def select(search, finished, fallback=(), problem=PROBLEM):
    """``search.select`` (it takes the problem first when it seeds its tie-breaking by the problem)."""
    if "problem" in inspect.signature(search.select).parameters:
        return search.select(problem, finished, fallback)
    return search.select(finished, fallback)


def test_select_argmax_takes_the_highest_scored_finished_node():
    pool = [done(1, 0.3), done(2, 0.9), done(3, 0.5)]
    sel = select(StepSearch(selection="argmax"), pool)
    assert sel.answer == "2" and sel.extras["finished"] == 3 and len(sel.candidates) == 3
    assert sel.scores.final == (0.3, 0.9, 0.5)


def test_select_majority_ignores_a_lone_top_score():
    pool = [done(5, 0.99), done(6, 0.1), done(6, 0.2)]
    assert select(StepSearch(selection="majority"), pool).answer == "6"
    assert select(StepSearch(selection="argmax"), pool).answer == "5"


def test_select_weighted_differs_from_majority_and_argmax():
    # argmax: 1 (0.95); majority: 2 (three votes, sum 0.3); weighted: 3 (sum 1.2 > 0.95 > 0.3)
    pool = [done(1, 0.95), done(2, 0.1), done(2, 0.1), done(2, 0.1), done(3, 0.6), done(3, 0.6)]
    answers = {rule: select(StepSearch(selection=rule), pool).answer for rule in ("argmax", "majority", "weighted")}
    assert answers == {"argmax": "1", "majority": "2", "weighted": "3"}


def test_select_falls_back_to_the_best_unfinished_node():
    worst, best, middle = (node("3+4=9", score=0.2), node("3+4=7", score=0.9), node("3+4=8", score=0.5))
    sel = select(StepSearch(), [], [worst, best, middle])
    assert sel.candidates == (best.candidate,) and sel.extras["finished"] == 0 and sel.answer is None
    assert select(StepSearch(), [], []).answer is None


def test_select_breaks_ties_at_random_not_by_finishing_order():
    # two answers tie under every rule; over many problems (the tie seed) both must win, in either order
    pool = [done(1, 0.5), done(2, 0.5)]
    for rule in ("argmax", "majority", "weighted"):
        for order in (pool, pool[::-1]):
            wins = {select(StepSearch(selection=rule), order, problem=replace(PROBLEM, id=f"p{i}")).answer
                    for i in range(40)}
            assert wins == {"1", "2"}, rule


# -- beam search ---------------------------------------------------------------------------------------------------
BEAM_TREE = {   # every list is worst-first
    (): [("3+4=6", 1), ("3+4=9", 1), ("3+4=8", 1), ("3+4=7", 1)],
    ("3+4=7",): [("7*2=15", 1), ("7*2=14", 1)],
    ("3+4=8",): [("8*2=17", 1), ("8*2=16", 1)],
    ("3+4=9",): [("9*2=18", 1), ("9*2=19", 1)],
    ("3+4=6",): [("6*2=12", 1), ("6*2=13", 1)],
    **{(a, b): [(f"A:{b.split('=')[1]}", 1)] for a, b in [
        ("3+4=7", "7*2=15"), ("3+4=7", "7*2=14"), ("3+4=8", "8*2=17"), ("3+4=8", "8*2=16"),
        ("3+4=9", "9*2=18"), ("3+4=9", "9*2=19"), ("3+4=6", "6*2=12"), ("3+4=6", "6*2=13")]},
}
BEAM_SCORES = {"3+4=7": 0.9, "3+4=8": 0.6, "3+4=9": 0.3, "3+4=6": 0.1,
               "7*2=14": 0.95, "7*2=15": 0.2, "8*2=16": 0.7, "8*2=17": 0.4,
               "9*2=18": 0.99, "9*2=19": 0.99, "6*2=12": 0.99, "6*2=13": 0.99,     # only reachable by a bad prune
               "A:14": 1.0, "A:15": 0.3, "A:16": 0.8, "A:17": 0.5,
               "A:18": 1.0, "A:19": 1.0, "A:12": 1.0, "A:13": 1.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_keeps_the_top_beams_and_answers_from_the_best_branch(seed):
    fake, policy, verifier, ledger = setup(BEAM_TREE, BEAM_SCORES)
    sel = BeamSearch(budget=4, expansions=2, seed=seed).solve(PROBLEM, policy, verifier)
    prompts = fake.prompts()
    # round 0: the root, all 4 samples; round 1: the two best first steps (not 9 or 6, whose subtrees score
    # higher below, so keeping the wrong beams would change the answer); round 2: the two best second steps
    assert [(p, q.n) for p, q in fake.calls[:1]] == [(ROOT, 4)]
    assert sorted((p, q.n) for p, q in fake.calls[1:3]) == [(under(["3+4=7"]), 2), (under(["3+4=8"]), 2)]
    assert sorted((p, q.n) for p, q in fake.calls[3:]) == [(under(["3+4=7", "7*2=14"]), 2),
                                                           (under(["3+4=8", "8*2=16"]), 2)]
    assert len(prompts) == 5 and ledger.policy_samples == 12          # budget 4 step samples in each of 3 rounds
    assert sel.answer == "14" and sel.extras == {"finished": 4, "rounds": 3, "width": 2}
    assert sorted(c.answer for c in sel.candidates) == ["14", "14", "16", "16"]


def test_beam_search_goes_on_after_a_premature_answer():
    # half the root's samples answer at once (99, scored 0.01): width 2 solutions have finished after round 0,
    # but they finished badly; the beams on 3+4=7 must still be extended to the right answer
    tree = {(): [("A:99", 1), ("3+4=7", 1)], ("3+4=7",): [("7*2=14", 1)], ("3+4=7", "7*2=14"): [("A:14", 1)]}
    scores = {"A:99": 0.01, "3+4=7": 0.9, "7*2=14": 0.9, "A:14": 1.0}
    fake, policy, verifier, _ = setup(tree, scores)
    sel = BeamSearch(budget=4, expansions=2).solve(PROBLEM, policy, verifier)
    assert under(["3+4=7"]) in fake.prompts()
    assert sel.answer == "14" and "3+4=7\n7*2=14\nA:14" in [c.text for c in sel.candidates]


def test_beam_search_with_lookahead_ranks_by_the_greedy_continuation_and_charges_it():
    # by its own score, 3+4=8 beats 3+4=7; one greedy step further, 3+4=7 leads to 0.95 and 3+4=8 to 0.1
    tree = {(): [("3+4=8", 1), ("3+4=7", 1)], ("3+4=7",): [("7*2=14", 1)], ("3+4=8",): [("8*2=17", 1)],
            ("3+4=7", "7*2=14"): [("A:14", 1)], ("3+4=8", "8*2=17"): [("A:17", 1)]}
    scores = {"3+4=8": 0.9, "3+4=7": 0.5, "7*2=14": 0.95, "8*2=17": 0.1, "A:14": 1.0, "A:17": 0.9}
    fake, policy, verifier, ledger = setup(tree, scores)
    sel = BeamSearch(budget=2, expansions=2, lookahead=1).solve(PROBLEM, policy, verifier)
    # width 1: only 3+4=7 is kept after round 0, so no step-sampled request ever continues 3+4=8 in round 1
    sampled = [p for p, q in fake.calls if q.temperature > 0]
    assert under(["3+4=8"]) not in sampled[1:] and under(["3+4=7"]) in sampled
    greedy = [p for p, q in fake.calls if q.temperature == 0]
    assert under(["3+4=8"]) in greedy and under(["3+4=7"]) in greedy   # the lookahead was asked for (and charged)
    assert ledger.policy_requests == len(fake.calls)
    assert sel.answer == "14"


# -- DVTS ----------------------------------------------------------------------------------------------------------
DVTS_TREE = {
    (): [("3+4=8", 1), ("3+4=7", 1)],
    ("3+4=7",): [("7*2=15", 1), ("7*2=14", 1)],
    ("3+4=8",): [("8*2=17", 1), ("8*2=16", 1)],
    ("3+4=7", "7*2=14"): [("A:14", 1)], ("3+4=7", "7*2=15"): [("A:15", 1)],
    ("3+4=8", "8*2=16"): [("A:16", 1)], ("3+4=8", "8*2=17"): [("A:17", 1)],
}
DVTS_SCORES = {"3+4=7": 0.9, "3+4=8": 0.6, "7*2=14": 0.95, "7*2=15": 0.85, "8*2=16": 0.3, "8*2=17": 0.2,
               "A:14": 1.0, "A:15": 0.9, "A:16": 0.4, "A:17": 0.3}


def test_dvts_subtrees_keep_their_own_best_child_and_do_not_share():
    fake, policy, verifier, ledger = setup(DVTS_TREE, DVTS_SCORES)
    sel = DiverseTreeSearch(budget=4, expansions=2).solve(PROBLEM, policy, verifier)
    # round 0: one request of budget samples from the root, split [8, 8] | [7, 7] into the two subtrees
    assert [(p, q.n) for p, q in fake.calls[:1]] == [(ROOT, 4)]
    # round 1: each subtree expands its own node; the 3+4=8 subtree keeps 8*2=16 (its best) even though both
    # children of 3+4=7 score higher: a beam of width 2 would have dropped it
    assert sorted((p, q.n) for p, q in fake.calls[1:3]) == [(under(["3+4=7"]), 2), (under(["3+4=8"]), 2)]
    assert sorted((p, q.n) for p, q in fake.calls[3:]) == [(under(["3+4=7", "7*2=14"]), 2),
                                                           (under(["3+4=8", "8*2=16"]), 2)]
    assert sorted(c.text for c in sel.candidates) == ["3+4=7\n7*2=14\nA:14", "3+4=8\n8*2=16\nA:16"]
    assert sel.answer == "14" and sel.extras == {"finished": 2, "rounds": 3, "subtrees": 2}
    assert ledger.policy_samples == 12


def test_dvts_subtree_count_is_budget_over_expansions():
    fake, policy, verifier, _ = setup(DVTS_TREE, DVTS_SCORES)
    sel = DiverseTreeSearch(budget=6, expansions=2).solve(PROBLEM, policy, verifier)
    # root: 6 samples [8, 8, 8, 7, 7, 7] -> subtrees {8, 8} -> 8, {8, 7} -> 7, {7, 7} -> 7; the two subtrees on
    # 3+4=7 share one request (4 samples [15, 15, 14, 14], 2 each), the one on 3+4=8 asks for its own 2; so the
    # two subtrees that met on 3+4=7 still go on apart, one to 15 and one to 14
    assert sel.extras["subtrees"] == 3 and fake.calls[0][1].n == 6
    assert sorted((p, q.n) for p, q in fake.calls[1:3]) == [(under(["3+4=7"]), 4), (under(["3+4=8"]), 2)]
    assert sorted(c.answer for c in sel.candidates) == ["14", "15", "16"] and sel.answer == "14"


def test_dvts_spends_the_whole_budget_every_round_while_all_subtrees_live():
    fake, policy, verifier, ledger = setup(DVTS_TREE, DVTS_SCORES)
    sel = DiverseTreeSearch(budget=7, expansions=3).solve(PROBLEM, policy, verifier)
    assert sel.extras["subtrees"] == 2 and sel.extras["rounds"] == 3
    assert fake.calls[0][1].n == 7 and ledger.policy_samples == 3 * 7     # every subtree lives to round 3


# -- MCTS ----------------------------------------------------------------------------------------------------------
def tree_node(visits, value_sum, parent=None):
    t = _TreeNode(node("x"), parent=parent, visits=visits, value_sum=value_sum)
    if parent is not None:
        parent.children.append(t)
    return t


def test_uct_formula_and_exploration_growing_with_parent_visits():
    parent = tree_node(10, 0.0)
    child = tree_node(4, 2.0, parent)
    # 0.5 + 1.0 * sqrt(ln(10) / 4) = 0.5 + sqrt(2.302585 / 4)
    assert child.uct(1.0) == pytest.approx(0.5 + 0.758714, abs=1e-5)
    assert child.uct(0.0) == pytest.approx(0.5)
    assert child.uct(2.0) == pytest.approx(0.5 + 2 * 0.758714, abs=1e-5)
    parent.visits = 100                               # sqrt(ln(100) / 4) = 1.072983
    assert child.uct(1.0) == pytest.approx(0.5 + 1.072983, abs=1e-5)
    assert tree_node(0, 0.0, parent).uct(1.0) == math.inf
    with pytest.raises(LabError, match="c_uct"):
        MCTS(c_uct=-1.0)


def test_walk_takes_the_unvisited_child_first_then_the_higher_uct():
    search = MCTS(c_uct=1.0, widening=0.0)
    root = tree_node(10, 6.0)
    root.expansions = 1
    good = tree_node(5, 4.5, root)                    # mean 0.9
    fresh = tree_node(0, 0.0, root)                   # never visited
    assert search._walk(root) is fresh and fresh.visits == 1 and root.visits == 11   # virtual loss on the path
    # all visited: exploitation alone (c=0) takes the higher mean, exploration can prefer the rarely visited one
    root = tree_node(100, 60.0)
    root.expansions = 1
    often = tree_node(90, 54.0, root)                 # mean 0.6; 0.6 + sqrt(ln 101 / 90) = 0.826
    rare = tree_node(10, 5.0, root)                   # mean 0.5; 0.5 + sqrt(ln 101 / 10) = 1.179
    assert MCTS(c_uct=0.0, widening=0.0)._walk(root) is often
    root.visits, often.visits = 100, 90
    assert MCTS(c_uct=1.0, widening=0.0)._walk(root) is rare
    assert good.visits == 5


MCTS_TREE = {
    (): [("3+4=8", 1), ("3+4=7", 1)],
    ("3+4=7",): [("7*2=15", 1), ("7*2=14", 1)],
    ("3+4=8",): [("8*2=16", 1)],
    ("3+4=7", "7*2=14"): [("A:14", 1)], ("3+4=7", "7*2=15"): [("A:15", 1)],
    ("3+4=8", "8*2=16"): [("A:16", 1)],
}
MCTS_SCORES = {"A:14": 1.0, "A:15": 0.6, "A:16": 0.1}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mcts_follows_the_first_step_with_high_value_rollouts(seed):
    fake, policy, verifier, ledger = setup(MCTS_TREE, MCTS_SCORES)
    sel = MCTS(budget=6, expansions=2, parallel=1, widening=0.0, seed=seed).solve(PROBLEM, policy, verifier)
    prompts = fake.prompts()
    # wave 0 rolls out the root twice (one rollout under each first step: values 0.6 or 1.0 under 3+4=7, 0.1
    # under 3+4=8); UCT then expands 3+4=7, never 3+4=8
    assert prompts[0] == ROOT and prompts[1] == under(["3+4=7"])
    assert under(["3+4=8"]) not in prompts
    assert all(q.stop == () for _, q in fake.calls)           # rollouts run to the end
    assert sel.answer == "14"
    assert "3+4=7\n7*2=14\nA:14" in [c.text for c in sel.candidates]
    assert sel.extras["tree_children"] == 2


def test_mcts_without_rollouts_values_children_by_their_own_score():
    tree = {(): [("3+4=8", 1), ("3+4=7", 1)], ("3+4=7",): [("7*2=14", 1)], ("3+4=8",): [("8*2=16", 1)],
            ("3+4=7", "7*2=14"): [("A:14", 1)], ("3+4=8", "8*2=16"): [("A:16", 1)]}
    scores = {"3+4=7": 0.9, "3+4=8": 0.1, "7*2=14": 0.9, "8*2=16": 0.1, "A:14": 1.0, "A:16": 0.1}
    fake, policy, verifier, _ = setup(tree, scores)
    sel = MCTS(budget=6, expansions=2, parallel=1, widening=0.0, rollout=False, c_uct=0.1).solve(
        PROBLEM, policy, verifier)
    assert all(q.stop == ("\n",) for _, q in fake.calls)
    assert fake.prompts() == [ROOT, under(["3+4=7"]), under(["3+4=7", "7*2=14"])]
    assert sel.answer == "14"


# -- particle filtering ------------------------------------------------------------------------------------------
PF_TREE = {
    (): [("3+4=8", 1), ("3+4=7", 1)],              # 4 particles: two take 3+4=8, two take 3+4=7
    ("3+4=8",): [("A:16", 1)],                     # ... the 8 branch answers at once (finished after round 2)
    ("3+4=7",): [("7*2=14", 1)], ("3+4=7", "7*2=14"): [("A:14", 1)],
}
PF_SCORES = {"3+4=8": 0.5, "A:16": 0.2, "3+4=7": 0.8, "7*2=14": 0.75, "A:14": 0.9}


def spy_resampling(monkeypatch, pick=None):
    """Record the weights each resampling sees; resample with ``pick(weights)`` (identity by default, so the
    population stays put and every round's weights can be read off)."""
    seen = []

    def spy(weights, rng):
        seen.append(np.array(weights, dtype=float))
        return np.arange(len(weights)) if pick is None else np.asarray(pick(weights))

    monkeypatch.setattr(particles_module, "systematic_resample", spy)
    return seen


def test_particle_weights_come_from_the_latest_score_and_finished_particles_keep_theirs(monkeypatch):
    # softmax(logit(score)): odds s / (1 - s), normalised.  Round 1: 3+4=8 at 0.5 (odds 1), 3+4=7 at 0.8 (odds 4);
    # round 2: A:16 at 0.2 (odds 1/4), 7*2=14 at 0.75 (odds 3); round 3: A:16 keeps 1/4, A:14 at 0.9 (odds 9).
    # A product over steps would give other numbers (round 2: 0.1 vs 0.6).
    seen = spy_resampling(monkeypatch)
    fake, policy, verifier, ledger = setup(PF_TREE, PF_SCORES)
    sel = ParticleFilter(budget=4).solve(PROBLEM, policy, verifier)
    assert len(seen) == 3
    assert seen[0] == pytest.approx([1 / 10, 1 / 10, 4 / 10, 4 / 10])
    assert seen[1] == pytest.approx([0.25 / 6.5, 0.25 / 6.5, 3 / 6.5, 3 / 6.5])
    assert seen[2] == pytest.approx([0.25 / 18.5, 0.25 / 18.5, 9 / 18.5, 9 / 18.5])
    assert [(p, q.n) for p, q in fake.calls] == [(ROOT, 4), (under(["3+4=8"]), 2), (under(["3+4=7"]), 2),
                                                 (under(["3+4=7", "7*2=14"]), 2)]
    assert ledger.policy_samples == 10 and sel.extras["rounds"] == 3
    assert sorted(c.answer for c in sel.candidates) == ["14", "14", "16", "16"] and sel.answer == "14"


def test_particle_filter_continues_the_resampled_population(monkeypatch):
    # after round 1 every particle becomes a copy of particle 2 (3+4=7): one request of 4 continues it
    seen = spy_resampling(monkeypatch, pick=lambda w: [2, 2, 2, 2])
    fake, policy, verifier, _ = setup(PF_TREE, PF_SCORES)
    sel = ParticleFilter(budget=4).solve(PROBLEM, policy, verifier)
    assert [(p, q.n) for p, q in fake.calls] == [(ROOT, 4), (under(["3+4=7"]), 4), (under(["3+4=7", "7*2=14"]), 4)]
    assert [c.answer for c in sel.candidates] == ["14"] * 4 and len(seen) == 3


def test_resampling_probabilities_by_hand():
    probs = particles_module.resampling_probabilities
    assert probs([0.5, 0.8]) == pytest.approx([0.2, 0.8])                        # odds 1 : 4
    assert probs([0.5, 0.8], temperature=2.0) == pytest.approx([1 / 3, 2 / 3])   # odds^(1/2): 1 : 2
    edge = probs([0.0, 1.0, 0.5])
    assert np.all(np.isfinite(edge)) and edge.sum() == pytest.approx(1.0) and 0 < edge[0] < edge[2] < edge[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_particle_filter_with_real_resampling_follows_the_verifier(seed):
    scores = {"3+4=8": 0.01, "A:16": 0.01, "3+4=7": 0.99, "7*2=14": 0.99, "A:14": 0.99}
    runs = []
    for _ in range(2):
        fake, policy, verifier, _ = setup(PF_TREE, scores)
        sel = ParticleFilter(budget=4, seed=seed).solve(PROBLEM, policy, verifier)
        runs.append(([c.text for c in sel.candidates], fake.prompts()))
    assert runs[0] == runs[1]                                          # seeded: a rerun is identical
    # odds 1/99 vs 99: the 8 particles (weight ~5e-5 each) die at the first resampling, the 7 ones (~0.5) double
    assert sel.answer == "14" and [c.answer for c in sel.candidates] == ["14"] * 4
    assert under(["3+4=8"]) not in fake.prompts()


def test_systematic_resample_keeps_every_particle_of_weight_at_least_one_over_n_and_is_seeded():
    w = np.array([0.25, 0.05, 0.4, 0.3])
    for seed in range(200):
        idx = list(systematic_resample(w, np.random.default_rng(seed)))
        assert len(idx) == 4 and idx == sorted(idx)
        counts = [idx.count(i) for i in range(4)]
        # N w = 1, 0.2, 1.6, 1.2: each particle appears floor or ceil of that, so all but the light one survive
        assert counts[0] == 1 and counts[1] in (0, 1) and counts[2] in (1, 2) and counts[3] in (1, 2)
    a = systematic_resample(w, np.random.default_rng(11))
    b = systematic_resample(w, np.random.default_rng(11))
    assert list(a) == list(b)
    outcomes = {tuple(systematic_resample(w, np.random.default_rng(s))) for s in range(200)}
    assert len(outcomes) > 1                                           # the offset is random


# -- the ledger through the metered wrappers --------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: BeamSearch(budget=4, expansions=2),
    lambda: BeamSearch(budget=4, expansions=2, lookahead=1),
    lambda: DiverseTreeSearch(budget=4, expansions=2),
    lambda: MCTS(budget=8, expansions=2, parallel=2),
    lambda: MCTS(budget=8, expansions=2, rollout=False),
    lambda: ParticleFilter(budget=4),
], ids=["beam", "beam_lookahead", "dvts", "mcts", "mcts_steps", "particles"])
def test_ledger_charges_exactly_what_the_policy_served(make):
    fake, policy, verifier, ledger = setup(TREE, verifier=ProcessOracle(TASK))
    make().solve(PROBLEM, policy, verifier)
    assert ledger.policy_requests == len(fake.calls)
    assert ledger.policy_samples == sum(q.n for _, q in fake.calls)
    assert ledger.completion_tokens == sum(fake.served_tokens) > 0
    assert ledger.prompt_tokens == sum(len(p) + 1 for p in fake.prompts())


def test_ledger_of_one_expansion_matches_hand_count():
    fake, policy, verifier, ledger = setup(TREE, verifier=ProcessOracle(TASK))
    search = StepSearch()
    search.expand_and_score(PROBLEM, policy, verifier, [search.root()], 4, tag=0)
    # four one-step samples "3+4=8", "3+4=8", "3+4=7", "3+4=7": 5 characters + 1 each
    assert ledger.completion_tokens == 24 and ledger.prompt_tokens == 9 and ledger.policy_samples == 4
    assert ledger.verifier_calls == 1 and ledger.verifier_candidates == 4
