"""Arithmetic chains: the lab's tiny world task, with exactly checkable steps.

A problem is a start value and a chain of operations, evaluated left to right with every result taken mod 100:

    prompt    Q:17+5*3-8
    solution  17+5=22
              22*3=66
              66-8=58
              A:58

One step per line; the last line carries the final-answer marker ``A:``. Difficulty is set by the number of
operations and by the operand sizes; multiplications are the hard steps for a small model and produce systematic
(repeated) wrong answers, which is what makes majority vote plateau below coverage.

Train and eval problems are disjoint by construction: a problem belongs to the eval split exactly when a hash of its
question lands in the eval bucket, so no generator, with any seed, can put an eval question into training data.

    python -c "from search.tasks.arith import ArithTask; t = ArithTask(); p = t.problems('eval', 1)[0]; print(p.prompt + t.solution(p))"
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Sequence

from search.contracts import LabError, Problem

MODULUS = 100
"""Every intermediate result is reduced mod 100, so every number has at most two digits."""
ANSWER_MARKER = "A:"
"""Prefix of the final-answer line."""
QUESTION_MARKER = "Q:"
"""Prefix of the prompt line."""
EVAL_BUCKETS = 8
"""One question in EVAL_BUCKETS (by hash) belongs to the eval split; the rest to train."""

_ANSWER_RE = re.compile(r"^A:(\d{1,3})$")
_STEP_RE = re.compile(r"^(\d{1,3})([+\-*])(\d{1,3})=(\d{1,3})$")


@dataclass(frozen=True)
class Difficulty:
    """The generator's knobs. Problems are drawn uniformly over the operation counts in [min_ops, max_ops]."""

    min_ops: int = 2
    """Fewest operations in a chain (at least 1)."""
    max_ops: int = 6
    """Most operations in a chain."""
    max_addend: int = 99
    """Largest operand of + and -."""
    big_addend_weight: float = 0.9
    """Probability that a + or - operand is drawn from 10..max_addend (a two-digit step, where carries make the
    tiny policy err); otherwise it is drawn from 1..9."""
    max_factor: int = 9
    """Largest operand of * (drawn from 2..max_factor)."""
    mul_weight: float = 0.2
    """Probability that an operation is a multiplication; + and - share the rest equally."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_ops <= self.max_ops:
            raise LabError(f"arith difficulty needs 1 <= min_ops <= max_ops, got {self.min_ops}..{self.max_ops}")
        if not 1 <= self.max_addend < MODULUS or not 2 <= self.max_factor < MODULUS:
            raise LabError("arith operands must stay below the modulus 100: set max_addend in 1..99, max_factor in 2..99")
        for knob in ("mul_weight", "big_addend_weight"):
            if not 0 <= getattr(self, knob) <= 1:
                raise LabError(f"arith {knob}={getattr(self, knob)} must be in [0, 1]")


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return (a + b) % MODULUS
    if op == "-":
        return (a - b) % MODULUS
    return (a * b) % MODULUS


def _is_eval(question: str) -> bool:
    digest = hashlib.sha256(question.encode()).digest()
    return digest[0] % EVAL_BUCKETS == 0


def reference_steps(start: int, ops: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """The correct solution lines of a chain, the answer line last."""
    steps, value = [], start
    for op, b in ops:
        new = _apply(value, op, b)
        steps.append(f"{value}{op}{b}={new}")
        value = new
    steps.append(f"{ANSWER_MARKER}{value}")
    return tuple(steps)


class ArithTask:
    """Generator, prompt renderer, answer extractor, grader and step checker for arithmetic chains."""

    name = "arith"
    step_delimiter = "\n"
    difficulty_key = "n_ops"
    """The metadata field that bins problems by difficulty in reports (the number of operations in the chain)."""

    def __init__(self, difficulty: Difficulty | None = None, eval_size: int = 200, eval_seed: int = 1234,
                 train_seed: int = 0):
        """``difficulty`` sets the mix; the eval split is the first ``eval_size`` eval-bucket problems drawn with
        ``eval_seed``, so the default evaluation set is fixed; ``train_seed`` seeds the training stream."""
        self.difficulty = difficulty or Difficulty()
        self.eval_size = eval_size
        self.eval_seed = eval_seed
        self.train_seed = train_seed

    # -- generation -------------------------------------------------------------------------------------------
    def _draw(self, rng: random.Random) -> tuple[int, tuple[tuple[str, int], ...]]:
        d = self.difficulty
        n_ops = rng.randint(d.min_ops, d.max_ops)
        ops = []
        for _ in range(n_ops):
            if rng.random() < d.mul_weight:
                ops.append(("*", rng.randint(2, d.max_factor)))
            else:
                big = d.max_addend >= 10 and rng.random() < d.big_addend_weight
                ops.append((rng.choice("+-"), rng.randint(10, d.max_addend) if big else rng.randint(1, 9)))
        return rng.randint(0, MODULUS - 1), tuple(ops)

    def _make(self, start: int, ops: tuple[tuple[str, int], ...]) -> Problem:
        question = str(start) + "".join(f"{op}{b}" for op, b in ops)
        steps = reference_steps(start, ops)
        return Problem(
            id=hashlib.sha256(question.encode()).hexdigest()[:12],
            prompt=f"{QUESTION_MARKER}{question}\n",
            reference=steps[-1][len(ANSWER_MARKER):],
            metadata={"n_ops": len(ops), "n_mul": sum(op == "*" for op, _ in ops), "question": question},
        )

    def stream(self, split: str, seed: int):
        """An endless stream of distinct problems of one split (duplicates within the stream are allowed only
        for train, where the question space is small for short chains)."""
        want_eval = split == "eval"
        rng = random.Random(seed)
        while True:
            start, ops = self._draw(rng)
            question = str(start) + "".join(f"{op}{b}" for op, b in ops)
            if _is_eval(question) == want_eval:
                yield self._make(start, ops)

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        if split not in ("train", "eval"):
            raise LabError(f"unknown split '{split}': use 'train' or 'eval'")
        if split == "eval":
            size = self.eval_size if n is None else min(n, self.eval_size)
            seen, out = set(), []
            for p in self.stream("eval", self.eval_seed):
                if p.id not in seen:
                    seen.add(p.id)
                    out.append(p)
                if len(out) == size:
                    return out
        if n is None:
            raise LabError("the train split is an endless stream: ask for a number of problems")
        stream = self.stream("train", self.train_seed)
        return [next(stream) for _ in range(n)]

    def solution(self, problem: Problem) -> str:
        """The reference solution text (what the policy is trained to write after the prompt)."""
        return "\n".join(self._reference_steps(problem))

    def _reference_steps(self, problem: Problem) -> tuple[str, ...]:
        question = problem.metadata["question"]
        tokens = re.findall(r"[+\-*]|\d+", question)
        start, ops = int(tokens[0]), [(tokens[i], int(tokens[i + 1])) for i in range(1, len(tokens), 2)]
        return reference_steps(start, ops)

    # -- reading solutions ------------------------------------------------------------------------------------
    def split_steps(self, text: str) -> tuple[str, ...]:
        return tuple(line.strip() for line in text.strip().split(self.step_delimiter) if line.strip())

    def extract_answer(self, text: str) -> str | None:
        """The number on the last line if that line is ``A:<digits>``; None for anything malformed (no marker,
        text after the answer, an answer that is not a number)."""
        steps = self.split_steps(text)
        if not steps:
            return None
        match = _ANSWER_RE.match(steps[-1])
        return str(int(match.group(1))) if match else None

    def grade(self, problem: Problem, answer: str | None) -> bool:
        return answer is not None and answer.strip().isdigit() and int(answer) == int(problem.reference)

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> tuple[bool, ...]:
        """Step i is right when it equals the reference line i exactly (a step that continues correctly from an
        earlier mistake is still wrong: it is not on the way to the reference answer)."""
        ref = self._reference_steps(problem)
        return tuple(i < len(ref) and step.strip() == ref[i] for i, step in enumerate(steps))

    def step_is_arithmetic(self, step: str) -> bool:
        """Whether a line is a well-formed and internally consistent operation line (``a op b = c`` mod 100)."""
        match = _STEP_RE.match(step.strip())
        if not match:
            return False
        a, op, b, c = match.groups()
        return _apply(int(a), op, int(b)) == int(c)
