"""A fast stand-in policy for logic tests: it samples from a known per-problem distribution over texts, so tests
know the exact answer of every estimator. The real vLLM server is exercised by the integration tests."""
from __future__ import annotations

import random
from typing import Sequence

from search.contracts import Completion, Generation, SamplingParams, Usage, per_prompt


class ScriptedPolicy:
    """Each prompt maps to a list of (text, weight); samples are drawn with the request seed. Token counts are the
    text's length in characters (the tiny policy's tokenizer is one token per character)."""

    model_id = "scripted@test"
    n_params = 1000

    def __init__(self, script: dict[str, list[tuple[str, float]]]):
        self.script = script
        self.calls: list[tuple[str, SamplingParams]] = []

    def generate(self, prompts: Sequence[str], params) -> list[Generation]:
        out = []
        for prompt, params in zip(prompts, per_prompt(params, len(prompts))):
            self.calls.append((prompt, params))
            texts, weights = zip(*self.script[prompt])
            rng = random.Random(f"{params.seed}|{prompt}")
            picks = rng.choices(texts, weights=weights, k=params.n)
            comps = tuple(Completion(text=t, completion_tokens=len(t) + 1, finish_reason="stop") for t in picks)
            out.append(Generation(comps, Usage(prompt_tokens=len(prompt) + 1, cached_prompt_tokens=0,
                                               completion_tokens=sum(c.completion_tokens for c in comps))))
        return out
