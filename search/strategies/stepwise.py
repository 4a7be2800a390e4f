"""The mechanics every step-wise search shares, written once: expand partial solutions by one step, score them with
a process verifier, aggregate step scores into one number, detect finished solutions, and pick the final answer.

Beam search, diverse verifier tree search, MCTS and particle filtering (the other files of this package) differ only
in which nodes they expand, how many children each gets, and which they keep. Each expansion is one policy call for
all the nodes a strategy expands at once (the server batches them; problems run concurrently), every node's prompt
is the problem prompt followed by its steps (so continuations of one node share a prompt prefix for vLLM's prefix
cache), and every node gets its own seed (so two nodes never share a random stream, and a rerun is identical).

The shared budget knob, ``budget``, is in the units of best-of-k: a search of budget N spends about what N whole
samples cost (N step continuations per round of a beam or tree search, N particles, N MCTS rollouts).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Sequence

from search.contracts import Candidate, LabError, Problem, SamplingParams, Scores, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.seeding import derive_seed
from search.strategies.selection import check_selection, select_answer

AGGREGATES = {
    "last": lambda s: s[-1],
    "min": min,
    "prod": math.prod,
    "mean": lambda s: sum(s) / len(s),
}
"""How a solution's step scores become one score: the last step's (a PRM's score of the whole prefix), the lowest,
the product, or the mean."""


@dataclass(frozen=True)
class Node:
    """A partial or finished solution in a search."""

    candidate: Candidate
    """Its steps so far and their text; ``completion_tokens`` counts every step's tokens."""
    step_scores: tuple[float, ...] = ()
    """The process verifier's score of each step (empty before scoring)."""
    score: float = 0.0
    """The step scores aggregated into one number (``StepSearch.aggregate``)."""
    finished: bool = False
    """Complete: it has a final answer, or cannot go on (a step hit the token limit, no new step came, or the
    step cap was reached)."""


@dataclass
class StepSearch:
    """Fields and mechanics shared by every step-wise strategy (subclasses add their own knobs and ``solve``)."""

    budget: int = 16
    """The shared budget knob, in samples per problem (see the module docstring for what each strategy does with
    it)."""
    aggregate: str = "last"
    """How step scores become a solution score: last | min | prod | mean (used for pruning and for the answer)."""
    selection: str = "argmax"
    """How the final answer is picked among finished solutions: argmax | majority | weighted."""
    temperature: float = 1.0
    """Sampling temperature of every step."""
    top_p: float = 1.0
    """Nucleus sampling mass of every step."""
    step_max_tokens: int = 32
    """Most tokens in one step; a step that reaches it ends its solution (finish reason ``length``)."""
    max_tokens: int = 96
    """Most tokens in a whole solution, the same cap as best-of-k's ``max_tokens``: a step is cut where the
    solution reaches it, and the solution ends there."""
    max_steps: int = 12
    """Most steps in a solution; a solution that reaches it is finished (and usually wrong)."""
    seed: int = 0
    """Base seed; every node's request seed derives from it, the problem and the node."""

    name = "stepwise"
    kind = "search"
    """Step-wise searches report one budget per run (their own), not every k from a pool."""

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise LabError(f"strategy.budget={self.budget} must be at least 1")
        if self.aggregate not in AGGREGATES:
            raise LabError(f"unknown strategy.aggregate '{self.aggregate}': use one of {', '.join(AGGREGATES)}")
        check_selection(self.selection)
        if self.max_steps < 1 or self.step_max_tokens < 1:
            raise LabError("strategy.max_steps and strategy.step_max_tokens must be at least 1")

    # -- checks -------------------------------------------------------------------------------------------------
    def check_verifier(self, verifier) -> None:
        """Refuse an outcome-only verifier: a step-wise search needs a score for every step."""
        if verifier.kind != "process":
            name = getattr(verifier, "name", type(verifier).__name__)
            raise LabError(f"strategy {self.name} needs a process verifier (a score per step), but {name} is an "
                           f"outcome verifier: use verifier=process_oracle (with any noise=...) or strategy=best_of_k")

    def check_expansions(self, expansions: int) -> None:
        """Children per expanded node must fit the budget (for strategies that split it into groups)."""
        if not 1 <= expansions <= self.budget:
            raise LabError(f"strategy.expansions={expansions} must lie in 1..strategy.budget={self.budget}")

    # -- mechanics ----------------------------------------------------------------------------------------------
    def root(self) -> Node:
        """The empty solution every search starts from."""
        return Node(Candidate(steps=(), answer=None, text="", prompt_tokens=0, completion_tokens=0,
                              finish_reason=""))

    def expand(self, problem: Problem, policy: MeteredPolicy, nodes: Sequence[Node], n: int | Sequence[int],
               tag: object, greedy: bool = False, to_end: bool = False) -> list[list[Node]]:
        """``n`` one-step continuations of each node (``n`` shared or per node), unscored, in one policy call.
        Nodes with the same text (beams that met, resampled particles) share one request for all their children,
        so the server sees each prefix once. ``tag`` names the round so that seeds differ between rounds;
        ``greedy`` samples at temperature 0; ``to_end`` continues to the end of the solution instead of one step."""
        counts = [n] * len(nodes) if isinstance(n, int) else list(n)
        wanted: dict[str, int] = {}             # children wanted per distinct prefix text
        for node, k in zip(nodes, counts):
            wanted[node.candidate.text] = wanted.get(node.candidate.text, 0) + k
        prefixes = {node.candidate.text: node.candidate for node in nodes}
        texts = list(wanted)
        stop = () if to_end else (policy.task.step_delimiter,)
        # greedy continuations of one prefix are all the same: ask for one and hand it to every node that wants it
        # every solution is held to max_tokens in all, as best-of-k's samples are; a step also to step_max_tokens
        left = {t: max(1, self.max_tokens - prefixes[t].completion_tokens) for t in texts}
        params = [SamplingParams(n=1 if greedy else wanted[t], temperature=0.0 if greedy else self.temperature,
                                 top_p=self.top_p, stop=stop, seed=derive_seed(self.seed, problem.id, tag, t),
                                 max_tokens=left[t] if to_end else min(self.step_max_tokens, left[t]))
                  for t in texts]
        batches = dict(zip(texts, policy.generate(problem, params, [prefixes[t].steps for t in texts])))
        taken = dict.fromkeys(texts, 0)
        out = []
        for parent, k in zip(nodes, counts):
            t = parent.candidate.text
            if greedy:
                batch = list(batches[t]) * k
            else:
                batch, taken[t] = batches[t][taken[t]:taken[t] + k], taken[t] + k
            children = []
            for cand in batch:
                cand = replace(cand, completion_tokens=parent.candidate.completion_tokens + cand.completion_tokens)
                if len(cand.steps) > self.max_steps:          # a continuation to the end ran past the step cap
                    cand = self._cut(cand, parent.candidate, policy.task)
                done = (to_end or cand.answer is not None or cand.finish_reason == "length"
                        or cand.completion_tokens >= self.max_tokens
                        or len(cand.steps) <= len(parent.candidate.steps) or len(cand.steps) >= self.max_steps)
                children.append(Node(cand, finished=done))
            out.append(children)
        return out

    def _cut(self, cand: Candidate, parent: Candidate, task) -> Candidate:
        """``cand`` cut to its first ``max_steps`` steps (it ends there, unanswered unless its last kept step is the
        answer). Its tokens past the parent are counted in proportion to the characters kept; the ledger has already
        charged every generated token."""
        steps = cand.steps[:self.max_steps]
        text = task.step_delimiter.join(steps)
        share = (len(text) - len(parent.text)) / max(1, len(cand.text) - len(parent.text))
        new_tokens = cand.completion_tokens - parent.completion_tokens
        return replace(cand, steps=steps, text=text, answer=task.extract_answer(text), finish_reason="length",
                       completion_tokens=parent.completion_tokens + round(new_tokens * share))

    def score(self, problem: Problem, verifier: MeteredVerifier, nodes: Sequence[Node]) -> list[Node]:
        """The nodes with their step scores and aggregated score, from one verifier call."""
        if not nodes:
            return []
        scores = verifier.score(problem, [node.candidate for node in nodes])
        agg = AGGREGATES[self.aggregate]
        return [replace(node, step_scores=s, score=float(agg(s))) for node, s in zip(nodes, scores.steps)]

    def expand_and_score(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier,
                         nodes: Sequence[Node], n: int | Sequence[int], tag: object) -> list[list[Node]]:
        """``expand`` then ``score`` every child in one verifier call; children grouped by parent."""
        groups = self.expand(problem, policy, nodes, n, tag)
        flat = self.score(problem, verifier, [c for g in groups for c in g])
        out, i = [], 0
        for g in groups:
            out.append(flat[i:i + len(g)])
            i += len(g)
        return out

    def continue_and_score(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier,
                           nodes: Sequence[Node], tag: object, steps: int, greedy: bool = True) -> list[Node]:
        """Continue each unfinished node by ``steps`` more steps, one sample each (greedy by default: a beam
        search's lookahead), and score the result. Finished nodes come back as they are; the continuations are
        charged like any other."""
        current = list(nodes)
        for depth in range(steps):
            todo = [i for i, node in enumerate(current) if not node.finished]
            if not todo:
                break
            grown = self.expand(problem, policy, [current[i] for i in todo], 1, (tag, depth), greedy=greedy)
            for i, children in zip(todo, grown):
                current[i] = children[0]
        return self.score(problem, verifier, current)

    def select(self, problem: Problem, finished: Sequence[Node], fallback: Sequence[Node] = (),
               extras: dict | None = None) -> Selection:
        """The strategy's answer from its finished solutions under ``selection``, ties broken uniformly (seeded by
        the problem), or from the best unfinished node when none finished (which then usually has no answer).
        A finished solution without an answer (it stopped early or hit a cap) is returned in the pool but never
        chosen while another has an answer: a process verifier scores its right prefix as high as a right solution,
        and the votes already ignore it."""
        pool = list(finished) or sorted(fallback, key=lambda node: -node.score)[:1]
        eligible = [node for node in pool if node.candidate.answer is not None] or pool
        answer = select_answer([node.candidate.answer for node in eligible], [node.score for node in eligible],
                               self.selection, random.Random(derive_seed(self.seed, problem.id, "ties")))
        scores = Scores(steps=tuple(node.step_scores or (0.0,) for node in pool))
        return Selection(answer=answer, candidates=tuple(node.candidate for node in pool), scores=scores,
                         extras={"finished": len(finished), **(extras or {})})
