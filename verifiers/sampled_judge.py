"""A generative verifier with its own compute: K sampled verdicts per candidate from a served model, voted.

    python -m search.run verifier=sampled_judge verifier.samples=8
    python -m search.run -m +sweep=judge_split            # split compute between policy samples k and verdicts K

GenRM-style: for each candidate the judge prompt (``template``, as in ``verifiers/judge.py``) is completed ``samples``
times at ``temperature`` (one request for all candidates of a call, ``n = samples``, seeded by the problem), and the
score is the share of verdicts that are ``yes`` among those that are ``yes`` or ``no`` (0.5 when none is). A
verdict is the sampled text up to ``max_tokens``: ``yes`` when it starts with ``yes_token`` (the end-of-text token
``</s>`` of the tiny policy reads as an empty text that stopped), ``no`` when it starts with ``no_token``.

Every verifier token is charged: the server's prompt tokens (each candidate's prompt once per request, however many
verdicts it asks for, as the ledger counts the policy's) plus every sampled verdict token.
"""
from __future__ import annotations

import threading
from typing import Sequence

from search.contracts import Candidate, LabError, Problem, Scores, Task
from search.seeding import derive_seed
from verifiers.judge import INSTRUCT_TEMPLATE, GenerativeJudge, judge

EOS_MARKERS = ("</s>", "<|endoftext|>", "<eos>")
"""Answer tokens that are the end of text: the server returns them as an empty text with finish reason ``stop``."""


class SampledJudge(GenerativeJudge):
    """An outcome verifier: the share of ``samples`` sampled verdicts that say yes."""

    def __init__(self, task: Task, http, model: str, model_id: str, n_params: int, samples: int = 4,
                 temperature: float = 1.0, max_tokens: int = 1, seed: int = 0, template: str = INSTRUCT_TEMPLATE,
                 yes_token: str = " yes", no_token: str = " no", name: str = "sampled_judge",
                 max_prompt_chars: int | None = None):
        """``samples``: verdicts per candidate (K); ``temperature``: their sampling temperature (> 0); ``max_tokens``:
        tokens per verdict; ``seed``: the base of each request's seed; ``max_prompt_chars``: the longest judge prompt
        sent, the solution cut at its end to fit (the model's context; None: no cut); the rest as in
        ``GenerativeJudge``."""
        if max_prompt_chars is not None and (not isinstance(max_prompt_chars, int) or max_prompt_chars < 1):
            raise LabError(f"verifier.max_prompt_chars={max_prompt_chars!r} must be null or an integer >= 1")
        self.max_prompt_chars = max_prompt_chars
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise LabError(f"verifier.samples={samples!r} must be an integer >= 1 (verdicts per candidate), e.g. 4")
        if not temperature > 0:
            raise LabError(f"verifier.temperature={temperature} must be > 0: sampled verdicts at temperature 0 are "
                           f"one verdict K times (use verifier=judge for the greedy one)")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise LabError(f"verifier.max_tokens={max_tokens!r} must be an integer >= 1")
        super().__init__(task, http, model, model_id, n_params, template, yes_token, no_token, 1, name)
        self.samples, self.temperature, self.max_tokens, self.seed = samples, temperature, max_tokens, seed
        self.abstained = 0
        """Candidates none of whose verdicts was yes or no (scored 0.5)."""
        self._count_lock = threading.Lock()

    def judge_prompt(self, problem: Problem, candidate: Candidate) -> str:
        """The judge prompt, with the solution cut so the whole prompt has at most ``max_prompt_chars`` characters."""
        prompt = super().judge_prompt(problem, candidate)
        if self.max_prompt_chars is None or len(prompt) <= self.max_prompt_chars:
            return prompt
        solution = self.task.step_delimiter.join(candidate.steps)
        room = max(0, len(solution) - (len(prompt) - self.max_prompt_chars))
        return self.template.format(prompt=problem.prompt, solution=solution[:room])[: self.max_prompt_chars]

    @property
    def answer_tokens(self) -> int:
        """Tokens the server generates after each judge prompt: ``max_tokens`` per verdict."""
        return self.max_tokens

    def counts(self) -> dict[str, int]:
        """``cut`` and ``abstained`` so far (the run writes them to summary.json)."""
        return {"cut": self.cut, "abstained": self.abstained}

    def verdict(self, text: str, finish_reason: str) -> bool | None:
        """True for yes, False for no, None for anything else."""
        for token, value in ((self.yes, True), (self.no, False)):
            if token in EOS_MARKERS and text == "" and finish_reason == "stop":
                return value
            if token not in EOS_MARKERS and text.startswith(token):
                return value
        return None

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        if not candidates:
            return Scores(steps=())
        body = {"model": self.model, "prompt": self.prompts(problem, candidates),
                "n": self.samples, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "seed": derive_seed(self.seed, "verdicts", problem.id)}
        data = self.http.post("/v1/completions", body)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        if len(choices) != len(candidates) * self.samples:
            raise LabError(f"judge server returned {len(choices)} verdicts for {len(candidates)} prompts x "
                           f"{self.samples} samples; it must accept a list of prompts and n in one completions "
                           f"request (the OpenAI API does)")
        out = []
        for i in range(len(candidates)):
            votes = [self.verdict(c["text"], c.get("finish_reason") or "")
                     for c in choices[i * self.samples:(i + 1) * self.samples]]
            votes = [v for v in votes if v is not None]
            if not votes:
                with self._count_lock:
                    self.abstained += 1
            out.append((sum(votes) / len(votes) if votes else 0.5,))
        usage = data.get("usage") or {}
        return Scores(steps=tuple(out), tokens=int(usage.get("prompt_tokens") or 0)
                      + int(usage.get("completion_tokens") or 0))


def sampled_judge(task: Task, samples: int = 4, temperature: float = 1.0, max_tokens: int = 1, seed: int = 0,
                  max_prompt_chars: int | None = None, **kwargs) -> SampledJudge:
    """A sampled judge on servers given by URL or on the managed server of ``checkpoint`` (the arguments of
    ``verifiers.judge.judge``), asking ``samples`` verdicts per candidate."""
    base = judge(task, **kwargs)
    return SampledJudge(task, base._http, base.model, base.model_id, base.n_params, samples, temperature, max_tokens,
                        seed, base.template, base.yes, base.no, max_prompt_chars=max_prompt_chars)
