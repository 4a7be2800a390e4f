"""Monte-Carlo tree search over solution steps: UCT selection, expansion by the policy, value from the process
verifier, by default through rollouts.

    python -m search.run strategy=mcts verifier=process_oracle strategy.budget=16

An iteration walks from the root by UCT (mean value + ``c_uct`` * sqrt(ln N_parent / N_child), unvisited children
first) to a node to expand (a leaf, or a node that progressive widening lets grow again) and expands it by
``expansions`` samples. With ``rollout`` (the default) each sample is a whole
completion of the leaf in one request: its first new step becomes a child, the verifier's score of the complete
solution is that child's value, and the completion is a finished solution (so ``budget`` N means N rollouts, the
compute of best-of-N). Without rollouts each sample is one step and its own score is its value (``budget`` N then
means N one-step expansions). Values are backed up along the path; the answer is picked among every finished
solution the search produced.

Iterations run in waves of ``parallel`` leaves: each walk adds a virtual loss (a visit worth 0) along its path so the
next walk prefers another branch, and the wave's leaves are expanded in one policy call, so the server gets full
batches. A wave of 1 is sequential MCTS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from search.contracts import LabError, Problem, Selection
from search.ledger import MeteredPolicy, MeteredVerifier
from search.strategies.stepwise import AGGREGATES, Node, StepSearch


@dataclass
class _TreeNode:
    node: Node
    parent: "_TreeNode | None" = None
    children: list["_TreeNode"] = field(default_factory=list)
    expansions: int = 0
    visits: int = 0
    value_sum: float = 0.0

    def uct(self, c: float) -> float:
        if self.visits == 0:
            return math.inf
        return self.value_sum / self.visits + c * math.sqrt(math.log(self.parent.visits) / self.visits)


@dataclass
class MCTS(StepSearch):
    """UCT over partial solutions."""

    expansions: int = 2
    """Samples drawn when a leaf is expanded (rollouts, or one-step children without rollouts)."""
    c_uct: float = 1.0
    """Exploration constant of UCT."""
    rollout: bool = True
    """Expand by whole completions and value each child by its completion's score (else one step, own score)."""
    parallel: int = 8
    """Leaves selected, expanded and rolled out together in one wave (virtual loss keeps them apart)."""
    widening: float = 0.5
    """Progressive widening: a node visited N times may be expanded up to ceil(N^widening) times, each adding new
    children, so the root does not stay at its first ``expansions`` children (0: expand every node once)."""

    name = "mcts"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expansions < 1 or self.c_uct < 0 or self.parallel < 1:
            raise LabError(f"strategy.expansions={self.expansions} and strategy.parallel={self.parallel} must be "
                           f">= 1, and strategy.c_uct={self.c_uct} >= 0")

    def _walk(self, root: _TreeNode) -> _TreeNode:
        """Descend by UCT to a node to expand (one never expanded, or one progressive widening lets grow again),
        adding a virtual loss (a visit worth 0) to every node on the way."""
        node = root
        node.visits += 1
        while node.children and not node.node.finished \
                and node.expansions >= math.ceil(node.visits ** self.widening):
            node = max(node.children, key=lambda t: t.uct(self.c_uct))
            node.visits += 1
        return node

    def _children(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier, leaves: list[_TreeNode],
                  counts: list[int], wave: int) -> tuple[list[list[tuple[Node, float]]], list[Node]]:
        """Expand each leaf by its count of samples: per leaf a list of (child, value), and the finished solutions
        met on the way."""
        if not self.rollout:
            grown = self.expand_and_score(problem, policy, verifier, [t.node for t in leaves], counts, wave)
            return [[(c, c.score) for c in group] for group in grown], [c for g in grown for c in g if c.finished]
        groups = self.expand(problem, policy, [t.node for t in leaves], counts, wave, to_end=True)
        done = self.score(problem, verifier, [c for g in groups for c in g])
        out, i, delim = [], 0, policy.task.step_delimiter
        for leaf, group in zip(leaves, groups):
            depth = len(leaf.node.candidate.steps) + 1
            pairs = []
            for full in done[i:i + len(group)]:
                if len(full.candidate.steps) <= depth:        # the completion is one step: the child is finished
                    pairs.append((full, full.score))
                    continue
                steps = full.candidate.steps[:depth]
                text = delim.join(steps)
                share = len(steps[-1]) / max(1, len(full.candidate.text) - len(leaf.node.candidate.text))
                new_tokens = full.candidate.completion_tokens - leaf.node.candidate.completion_tokens
                cand = replace(full.candidate, steps=steps, text=text, answer=policy.task.extract_answer(text),
                               completion_tokens=leaf.node.candidate.completion_tokens + round(new_tokens * share))
                scores = full.step_scores[:depth]
                pairs.append((Node(cand, scores, float(AGGREGATES[self.aggregate](scores)), finished=False),
                              full.score))
            out.append(pairs)
            i += len(group)
        return out, done

    def solve(self, problem: Problem, policy: MeteredPolicy, verifier: MeteredVerifier) -> Selection:
        root = _TreeNode(self.root())
        finished: dict[str, Node] = {}           # by text: a solution found twice counts once
        spent = waves = 0
        while spent < self.budget:
            left = self.budget - spent
            size = max(1, min(self.parallel, math.ceil(left / self.expansions)))
            leaves = [self._walk(root) for _ in range(size)]
            unique = list({id(t): t for t in leaves if not t.node.finished}.values())
            # the last wave gets what is left of the budget, never more
            counts = [min(self.expansions, left - i * self.expansions) for i in range(len(unique))]
            unique, counts = [t for t, c in zip(unique, counts) if c > 0], [c for c in counts if c > 0]
            values: dict[int, float] = {}
            if unique:
                groups, done = self._children(problem, policy, verifier, unique, counts, waves)
                for node in done:
                    if node.finished:
                        finished.setdefault(node.candidate.text, node)
                for leaf, pairs in zip(unique, groups):
                    by_text = {t.node.candidate.text: t for t in leaf.children}
                    for child, value in pairs:          # samples that share their first step share a child
                        t = by_text.setdefault(child.candidate.text, _TreeNode(child, parent=leaf))
                        t.visits += 1
                        t.value_sum += value
                    leaf.children = list(by_text.values())
                    leaf.expansions += 1
                    values[id(leaf)] = sum(value for _, value in pairs) / len(pairs)
            for leaf in leaves:                  # back up: the virtual visits become real ones with their value
                value = values.get(id(leaf), leaf.node.score)
                while leaf is not None:
                    leaf.value_sum += value
                    leaf = leaf.parent
            # a wave whose walks all ended on finished solutions draws nothing; count it so the loop ends
            spent += sum(counts) if counts else self.expansions
            waves += 1
        return self.select(problem, list(finished.values()), [t.node for t in root.children],
                           {"waves": waves, "root_visits": root.visits, "tree_children": len(root.children)})
