"""A generative judge: ask a served model whether a solution is right and read P(yes) from the logprobs.

    python -m search.run verifier=judge                      # the tiny policy judging itself (weak, by design)
    python -m search.run verifier=judge verifier.base_urls=[http://10.0.0.7:8000] verifier.model=Qwen2.5-7B-Instruct \\
        verifier.n_params=7600000000 verifier.template="$(cat my_judge_prompt.txt)"

Works with any OpenAI-compatible completions endpoint that returns ``top_logprobs``. One request per ``score`` call
carries every candidate's judge prompt (``template`` with ``{prompt}`` and ``{solution}`` filled in), asks for one
greedy token with the top ``top_logprobs`` alternatives, and scores the candidate
``P(yes) / (P(yes) + P(no))`` over the two answer tokens. A token missing from the top list counts as probability 0;
when both are missing the score is 0.5 (undecided) and ``undecided`` counts it.
"""
from __future__ import annotations

import math
import threading
from typing import Sequence

from search.contracts import Candidate, LabError, Problem, Scores, Task
from search.serving.http import Replicas, ServedModel

INSTRUCT_TEMPLATE = ("Problem:\n{prompt}\n\nProposed solution:\n{solution}\n\n"
                     "Is the proposed solution correct? Answer yes or no.\nAnswer:")
"""A judge prompt for an instruction-following model (answer tokens `` yes`` / `` no``)."""


class GenerativeJudge(ServedModel):
    """An outcome verifier that reads a model's probability of answering ``yes`` about each candidate."""

    kind = "outcome"

    def __init__(self, task: Task, http, model: str, model_id: str, n_params: int, template: str = INSTRUCT_TEMPLATE,
                 yes_token: str = " yes", no_token: str = " no", top_logprobs: int = 20, name: str = "judge"):
        """``http``: a ``Replicas`` for the judge's server, or a callable that returns one (started on first use);
        ``model``: its served name; ``model_id``: its identity for records; ``n_params``: its parameter count;
        ``template``: the judge prompt, with ``{solution}`` (the candidate's steps joined by the task's delimiter)
        and optionally ``{prompt}`` (the problem prompt); ``yes_token`` / ``no_token``: the answer tokens as the
        tokenizer writes them; ``top_logprobs``: alternatives asked for (the two answers must be among them)."""
        if "{solution}" not in template:
            raise LabError("verifier.template has no {solution} placeholder: the judge would not see the candidate; "
                           "add {solution} (and {prompt} for the problem) to the template")
        try:
            template.format(prompt="", solution="")
        except (KeyError, IndexError, ValueError) as err:
            raise LabError(f"verifier.template cannot be filled ({err!r}): only {{prompt}} and {{solution}} may be "
                           f"placeholders; write a literal brace as {{{{ or }}}}") from None
        self.task, self.model, self.model_id, self.n_params = task, model, model_id, n_params
        self.template, self.yes, self.no, self.top_logprobs, self.name = template, yes_token, no_token, top_logprobs, name
        self.undecided = 0
        """Candidates for which neither answer token was among the top logprobs (scored 0.5)."""
        super().__init__(http)
        self._lock = threading.Lock()

    def judge_prompt(self, problem: Problem, candidate: Candidate) -> str:
        """The text the judge completes for one candidate."""
        return self.template.format(prompt=problem.prompt, solution=self.task.step_delimiter.join(candidate.steps))

    def p_yes(self, top: dict[str, float]) -> float | None:
        """P(yes) / (P(yes) + P(no)) from one position's top logprobs; None when neither token is there."""
        lp_yes, lp_no = top.get(self.yes), top.get(self.no)
        if lp_yes is None and lp_no is None:
            return None
        if lp_no is None:
            return 1.0
        if lp_yes is None:
            return 0.0
        return 1.0 / (1.0 + math.exp(lp_no - lp_yes))

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        if not candidates:
            return Scores(steps=())
        body = {"model": self.model, "prompt": [self.judge_prompt(problem, c) for c in candidates],
                "max_tokens": 1, "temperature": 0.0, "logprobs": self.top_logprobs}
        data = self.http.post("/v1/completions", body)
        out = []
        for choice in sorted(data["choices"], key=lambda c: c.get("index", 0)):
            tops = (choice.get("logprobs") or {}).get("top_logprobs") or [{}]
            p = self.p_yes(tops[0] or {})
            if p is None:
                with self._lock:
                    self.undecided += 1
                p = 0.5
            out.append((p,))
        if len(out) != len(candidates):
            raise LabError(f"judge server returned {len(out)} answers for {len(candidates)} prompts; it must accept "
                           f"a list of prompts in one completions request (the OpenAI API does)")
        usage = data.get("usage") or {}
        return Scores(steps=tuple(out), tokens=int(usage.get("prompt_tokens") or 0)
                      + int(usage.get("completion_tokens") or 0))


# pragma: no mutate start
# Server-only factories: they build a vLLM server or client from a config and run only in the server tests;
# mutation testing measures the fast tests (docs/testing.md).
def judge(task: Task, base_urls: Sequence[str] | None = None, model: str | None = None, n_params: int | None = None,
          checkpoint: str = "tiny-policy", template: str = INSTRUCT_TEMPLATE, yes_token: str = " yes", no_token: str = " no",
          top_logprobs: int = 20, api_key: str | None = None, max_concurrency: int = 64, timeout_s: float = 120.0,
          max_retries: int = 4) -> GenerativeJudge:
    """A judge on servers given by URL (``base_urls``, ``model``, ``n_params``), or, when ``base_urls`` is None, on
    the managed server of ``checkpoint`` (shared with a policy of the same checkpoint and options)."""
    if base_urls:
        if not model or not n_params:
            raise LabError("a judge given by verifier.base_urls needs verifier.model (the served name) and "
                           "verifier.n_params (its parameter count, for the FLOPs formula)")
        http = Replicas(base_urls, "judge", model, "verifier", api_key=api_key, max_concurrency=max_concurrency,
                        timeout_s=timeout_s, max_retries=max_retries)
        return GenerativeJudge(task, http, model, model, int(n_params), template, yes_token, no_token, top_logprobs)
    from search.serving.clients import managed_policy

    managed = managed_policy(checkpoint)

    def start() -> Replicas:
        return Replicas(managed.base_urls, "judge", managed.client.model, "verifier",
                        max_concurrency=max_concurrency, timeout_s=timeout_s, max_retries=max_retries)

    return GenerativeJudge(task, start, checkpoint if model is None else model, managed.model_id, managed.n_params,
                           template, yes_token, no_token, top_logprobs)
# pragma: no mutate end
