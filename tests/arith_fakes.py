"""A fast stand-in for the tiny policy on the arithmetic task, for whole runs without a server.

It reads the question and the steps so far from the prompt and writes the reference solution's next steps, except
that each step it writes is wrong (its result off by ``+1``) with probability ``slip`` (and with probability
``recover`` the next step goes on from the right value, so a right answer is reached through a wrong step), and an
answer line comes
early (a premature, usually wrong ``A:`` line) with probability ``premature``. Everything is drawn from the request
seed, the prompt and the sample index, so a request is reproducible and two requests with different seeds differ.
Tokens are characters (the tiny policy's tokenizer is one token per character), plus one for the end of text.

Use it in a composed config: ``cfg.policy = fake_policy_config(slip=0.2)``.
"""
from __future__ import annotations

import random
import re
import threading
import time
from typing import Sequence

from omegaconf import OmegaConf

from search.contracts import Completion, Generation, SamplingParams, Usage, per_prompt

_OP = re.compile(r"([+\-*])(\d+)")


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op] % 100


class ArithPolicy:
    """The fake policy (see the module docstring). ``requests`` counts prompts served; ``cached_share`` is the
    share of each prompt it reports as served from a prefix cache."""

    last: "ArithPolicy | None" = None
    """The instance built most recently (a test reads what the run asked of it)."""

    def __init__(self, slip: float = 0.2, premature: float = 0.0, cached_share: float = 0.0, recover: float = 0.0,
                 model_id: str = "arith-fake@test", n_params: int = 1000, startup_s: float = 0.0,
                 latency_s: float = 0.0):
        self.slip, self.premature, self.cached_share, self.recover = slip, premature, cached_share, recover
        self.startup_s = startup_s
        """Seconds the (pretended) server took to start; a run books them as its server_start phase."""
        self.latency_s = latency_s
        """Seconds each ``generate`` call waits before answering, as a call to a server does."""
        self.threads: list[str] = []
        """The thread each ``generate`` call ran on, in call order."""
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        ArithPolicy.last = self
        self.model_id, self.n_params = model_id, n_params
        self.requests = 0
        self.calls: list[tuple[str, SamplingParams]] = []
        self.batches: list[int] = []
        """Samples asked for in each ``generate`` call (one call per round of a step-wise search)."""

    def _solution_from(self, prompt: str, rng: random.Random) -> list[str]:
        head, _, done = prompt.partition("\n")
        question = head.removeprefix("Q:")
        start = int(re.match(r"\d+", question).group())
        ops = [(op, int(b)) for op, b in _OP.findall(question[len(str(start)):])]
        steps_done = [s for s in done.split("\n") if s]
        value = start
        if steps_done:                       # continue from the value the last step wrote, right or wrong
            value = int(steps_done[-1].rsplit("=", 1)[-1])
        out = []
        for op, b in ops[len(steps_done):]:
            if rng.random() < self.premature:
                out.append(f"A:{(value + 7) % 100}")
                return out
            result = _apply(value, op, b)
            if rng.random() < self.slip:
                out.append(f"{value}{op}{b}={(result + 1) % 100}")
                # a slip the policy recovers from: the written step is wrong, the next one uses the right value
                value = result if rng.random() < self.recover else (result + 1) % 100
                continue
            out.append(f"{value}{op}{b}={result}")
            value = result
        out.append(f"A:{value}")
        return out

    def generate(self, prompts: Sequence[str], params) -> list[Generation]:
        with self._lock:
            self.threads.append(threading.current_thread().name)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s)
            return self._generate(prompts, params)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _generate(self, prompts: Sequence[str], params) -> list[Generation]:
        self.batches.append(sum(p.n for p in per_prompt(params, len(prompts))))
        out = []
        for prompt, p in zip(prompts, per_prompt(params, len(prompts))):
            self.requests += 1
            self.calls.append((prompt, p))
            comps = []
            for i in range(p.n):
                rng = random.Random(f"{p.seed}|{prompt}|{i}|{p.temperature}")
                steps = self._solution_from(prompt, rng)
                finish = "stop"
                if "\n" in p.stop:
                    text = steps[0]
                else:
                    text = "\n".join(steps)
                if len(text) > p.max_tokens:
                    text, finish = text[:p.max_tokens], "length"
                comps.append(Completion(text=text, completion_tokens=len(text) + (finish == "stop"),
                                        finish_reason=finish))
            prompt_tokens = len(prompt) + 1
            out.append(Generation(tuple(comps), Usage(
                prompt_tokens=prompt_tokens, cached_prompt_tokens=int(prompt_tokens * self.cached_share),
                completion_tokens=sum(c.completion_tokens for c in comps))))
        return out


def fake_policy_config(**kwargs):
    """A policy config node that builds ``ArithPolicy(**kwargs)``."""
    return OmegaConf.create({"_target_": "tests.arith_fakes.ArithPolicy", **kwargs})


def with_fake_policy(cfg, **kwargs):
    """``cfg`` (a composed config) with its policy replaced by the fake and the generation cache off."""
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.policy = fake_policy_config(**kwargs)
    cfg.cache_path = None
    return cfg


class LongReader:
    """The exact outcome oracle that says, as a served verifier's ``counts()`` does, how many candidates it would
    have cut: those longer than ``limit`` characters."""

    kind, n_params, name = "outcome", 0, "long_reader"

    def __init__(self, task, limit: int = 20):
        from verifiers.oracle import OutcomeOracle

        self.oracle, self.limit, self.cut, self._lock = OutcomeOracle(task), limit, 0, threading.Lock()

    def score(self, problem, candidates):
        with self._lock:
            self.cut += sum(len(c.text) > self.limit for c in candidates)
        return self.oracle.score(problem, candidates)

    def counts(self):
        return {"cut": self.cut, "undecided": 0}
