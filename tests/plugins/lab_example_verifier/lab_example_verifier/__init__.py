"""A calculator as a process verifier: every step ``a op b = c`` is checked by doing the arithmetic, without the
reference solution. It catches slips in a step's result but not a wrong operation or a wrong operand copied from
the question, so it is a cheap verifier with a real false-positive rate, like a unit test that checks too little.

It needs nothing from the lab: the verifier protocol is duck-typed (``kind``, ``n_params``, ``score``), and
``score`` returns any object with the fields of ``search.contracts.Scores``; this one builds the lab's own type
when the lab is importable (it is, wherever the lab runs it).
"""
from __future__ import annotations

import re

from search.contracts import Scores

STEP = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)$")
ANSWER = re.compile(r"^A:(\d+)$")


class Calculator:
    """Scores step i 1.0 when steps 1..i each compute correctly (mod ``modulus``) and, for the answer line, when it
    repeats the last result; else ``miss_score``."""

    kind = "process"
    n_params = 0

    def __init__(self, task, modulus: int = 100, miss_score: float = 0.0):
        self.task, self.modulus, self.miss_score = task, modulus, float(miss_score)
        self.name = "calculator"

    def _step_ok(self, step: str, last: int | None) -> tuple[bool, int | None]:
        m = STEP.match(step)
        if m:
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            value = {"+": a + b, "-": a - b, "*": a * b}[op] % self.modulus
            return value == c and (last is None or a == last), c
        m = ANSWER.match(step)
        return bool(m) and last is not None and int(m[1]) == last, last

    def score(self, problem, candidates):
        out = []
        for cand in candidates:
            if not cand.steps:
                out.append((self.miss_score,))
                continue
            row, ok, last = [], True, None
            for step in cand.steps:
                good, last = self._step_ok(step.strip(), last)
                ok = ok and good
                row.append(1.0 if ok else self.miss_score)
            out.append(tuple(row))
        return Scores(steps=tuple(out))
