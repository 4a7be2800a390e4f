"""A generative judge: ask a served model whether a solution is right and read P(yes) from the logprobs.

    python -m search.run verifier=judge                      # the tiny policy judging itself (weak, by design)
    python -m search.run verifier=judge verifier.base_urls=[http://10.0.0.7:8000] verifier.model=Qwen2.5-7B-Instruct \\
        verifier.n_params=7600000000 verifier.template="$(cat my_judge_prompt.txt)"

Works with any OpenAI-compatible completions endpoint that returns ``top_logprobs``. One request per ``score`` call
carries every candidate's judge prompt (``template`` with ``{prompt}`` and ``{solution}`` filled in), asks for one
greedy token with the top ``top_logprobs`` alternatives, and scores the candidate
``P(yes) / (P(yes) + P(no))`` over the two answer tokens. A token missing from the top list counts as probability 0;
when both are missing the score is 0.5 (undecided) and ``undecided`` counts it.

A judge prompt longer than the server's context (``max_model_len`` from its ``/v1/models``, less the tokens the
judge generates) has its solution cut at the end to fit, counted in tokens by the server's own ``/tokenize`` and
``/detokenize`` (asked only for prompts whose UTF-8 bytes could reach the context): the judge reads the problem,
the start of the solution and the whole question, where the server would refuse the request; ``cut`` counts them.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Sequence

from search.contracts import Candidate, LabError, Problem, Scores, Task
from search.serving.http import SPECIAL_TOKENS, Replicas, ServedModel

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
        self.cut = 0
        """Candidates whose solution was cut so that the judge prompt fits the server's context."""
        super().__init__(http)
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """``cut`` and ``undecided`` so far (the run writes them to summary.json)."""
        return {"cut": self.cut, "undecided": self.undecided}

    answer_tokens = 1
    """Tokens the server generates after each judge prompt: the prompt may use the context less these."""

    def prompts(self, problem: Problem, candidates: Sequence[Candidate]) -> list[str]:
        """Every candidate's judge prompt, one past the server's context with its solution cut to fit."""
        texts = [self.judge_prompt(problem, c) for c in candidates]
        context = self.context()
        if not context:                          # a server that does not say: sent as they are
            return texts
        limit = context - self.answer_tokens
        if limit < 1:
            raise LabError(f"verifier.max_tokens={self.answer_tokens} leaves no room for a prompt in server "
                           f"{self.model}'s context of {context} tokens: ask for fewer verdict tokens")
        for i, text in enumerate(texts):
            if len(text.encode()) + SPECIAL_TOKENS > limit:
                texts[i] = self._fit(problem, candidates[i], text, limit)
        return texts

    def _count(self, text: str, special: bool = True) -> list[int]:
        try:
            return self.http.post("/tokenize", {"model": self.model, "prompt": text,
                                                "add_special_tokens": special})["tokens"]
        except LabError as err:
            if "HTTP 404" not in str(err) or "does not exist" in str(err):     # vLLM's answer to a wrong model name
                raise
            raise LabError(f"judge server of {self.model} has no /tokenize, which the judge needs to cut a prompt past "
                           f"its context of {self.context()} tokens: serve the judge with vLLM, or give the policy "
                           f"a smaller max_tokens") from None

    def _fit(self, problem: Problem, candidate: Candidate, text: str, limit: int) -> str:
        """``text`` if the server counts at most ``limit`` tokens in it, else the judge prompt of the candidate's
        solution cut at its end (in the server's tokens) so that it does."""
        over = len(self._count(text)) - limit
        if over <= 0:
            return text
        ids = self._count(self.task.step_delimiter.join(candidate.steps), special=False)
        keep = len(ids) - over
        for _ in range(8):                       # the seam of the cut can tokenize a little longer than its parts
            keep = max(0, keep)
            solution = self.http.post("/detokenize", {"model": self.model, "tokens": ids[:keep]})["prompt"] \
                if keep else ""
            cut = self.judge_prompt(problem, dataclasses.replace(candidate, steps=(solution,)))
            over = len(self._count(cut)) - limit
            if over <= 0:
                with self._lock:
                    self.cut += 1
                return cut
            if keep == 0:
                raise LabError(f"the judge prompt without its solution is {over + limit} tokens, more than the "
                               f"{limit} that server {self.model}'s context leaves for it: shorten "
                               f"verifier.template or serve the judge with a longer --max-model-len")
            keep -= over
        raise LabError(f"the judge prompt of problem {problem.id} did not fit server {self.model}'s context after "
                       f"cutting its solution eight times: shorten verifier.template")

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
        body = {"model": self.model, "prompt": self.prompts(problem, candidates),
                "max_tokens": self.answer_tokens, "temperature": 0.0, "logprobs": self.top_logprobs}
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
