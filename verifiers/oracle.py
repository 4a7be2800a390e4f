"""Exact oracles: the best verifier there can be, built from the task's own grader and step checker.

    python -m search.run verifier=outcome_oracle     # one score per candidate: 1 if its answer is right
    python -m search.run verifier=process_oracle     # one score per step: 1 while every step so far is right
"""
from __future__ import annotations

from typing import Sequence

from search.contracts import Candidate, Problem, Scores, Task


class OutcomeOracle:
    """Scores a candidate 1.0 when the task's grader accepts its final answer, else 0.0."""

    kind = "outcome"
    n_params = 0
    name = "outcome_oracle"
    exact = True

    def __init__(self, task: Task):
        self.task = task

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        return Scores(steps=tuple((1.0 if self.task.grade(problem, c.answer) else 0.0,) for c in candidates))


class ProcessOracle:
    """Scores step i of a candidate 1.0 when steps 1..i all match the reference solution, else 0.0.

    The score is of the prefix, not the step alone, as a process reward model's is: once a solution has gone wrong
    it cannot come right. The final step's score is therefore 1.0 exactly when the whole solution is the reference
    one, which implies a correct answer (the converse holds for this task too, since every step is forced)."""

    kind = "process"
    n_params = 0
    name = "process_oracle"
    exact = True

    def __init__(self, task: Task):
        self.task = task

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        out = []
        for c in candidates:
            if not c.steps:
                out.append((0.0,))
                continue
            ok, prefix_ok = [], True
            for right in self.task.check_steps(problem, c.steps):
                prefix_ok = prefix_ok and right
                ok.append(1.0 if prefix_ok else 0.0)
            out.append(tuple(ok))
        return Scores(steps=tuple(out))
