"""The compute ledger: the one place where tokens, verifier calls and FLOPs are counted.

Strategies never see a raw policy or verifier. The runner hands them a ``MeteredPolicy`` and a ``MeteredVerifier``
bound to a fresh ``Ledger`` per problem, so every token a strategy spends is charged, by the same rule for every
strategy.

FLOPs follow one documented formula for policy and verifier alike: a forward pass costs about
``2 x parameters x tokens``. Compute is compared on what a cache-less engine spends, which does not depend on the
server's history (how warm its prefix cache was, what else it served, what it evicted); what this server actually
spent, with the prompt tokens it served from its prefix cache not recomputed, is recorded beside it:

    policy_flops        = 2 * policy_params   * (prompt_tokens + completion_tokens)            (compared)
    policy_flops_served = 2 * policy_params   * (prompt_tokens - cached_prompt_tokens + completion_tokens)
    verifier_flops      = 2 * verifier_params * verifier_tokens
    flops               = policy_flops + verifier_flops;  flops_served = policy_flops_served + verifier_flops

Best-of-k's per-k figures (``search.analysis.pool``) charge budget k the same way: the prompt once plus k
completions, as a fresh request on a cache-less engine would cost.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Sequence

from search.contracts import (Candidate, LabError, Policy, Problem, SamplingParams, ScoreError, Scores, Task,
                              Usage, Verifier, check_scores, prefix_text)


def one_line(err: object, limit: int = 200) -> str:
    """An exception's message on one line, cut at ``limit`` characters (an error line must stay one line)."""
    text = " ".join(str(err).split()) or "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Ledger:
    """Everything one problem's search spent."""

    policy_params: int
    """Parameters of the policy (for FLOPs)."""
    verifier_params: int = 0
    """Parameters of the verifier's model (0 for exact oracles)."""
    policy_requests: int = 0
    """Generation requests sent (one per prompt, whatever its n)."""
    policy_samples: int = 0
    """Samples generated (sum of n over requests)."""
    prompt_tokens: int = 0
    """Prompt tokens of all requests (each request's prompt counted once)."""
    cached_prompt_tokens: int = 0
    """Of those, tokens the server served from its prefix cache."""
    completion_tokens: int = 0
    """Generated tokens."""
    verifier_calls: int = 0
    """Calls to the verifier (one per batch of candidates scored)."""
    verifier_candidates: int = 0
    """Candidates scored."""
    verifier_tokens: int = 0
    """Tokens the verifier processed (0 for exact oracles)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def charge_generation(self, usage: Usage, n_samples: int) -> None:
        with self._lock:
            self.policy_requests += 1
            self.policy_samples += n_samples
            self.prompt_tokens += usage.prompt_tokens
            self.cached_prompt_tokens += usage.cached_prompt_tokens
            self.completion_tokens += usage.completion_tokens

    def charge_verifier(self, n_candidates: int, tokens: int) -> None:
        with self._lock:
            self.verifier_calls += 1
            self.verifier_candidates += n_candidates
            self.verifier_tokens += tokens

    @property
    def policy_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def policy_flops(self) -> float:
        """Policy FLOPs on a cache-less engine (every prompt token computed): the compute that is compared."""
        return policy_flops(self.policy_params, self.prompt_tokens, self.completion_tokens)

    @property
    def policy_flops_served(self) -> float:
        """Policy FLOPs this server spent: prompt tokens served from its prefix cache are not recomputed."""
        return policy_flops(self.policy_params, self.prompt_tokens - self.cached_prompt_tokens,
                            self.completion_tokens)

    @property
    def verifier_flops(self) -> float:
        return verifier_flops(self.verifier_params, self.verifier_tokens)

    @property
    def flops(self) -> float:
        """Policy plus verifier FLOPs on a cache-less engine (history-independent; what figures compare)."""
        return self.policy_flops + self.verifier_flops

    @property
    def flops_served(self) -> float:
        """Policy plus verifier FLOPs this server spent (depends on its prefix cache's history)."""
        return self.policy_flops_served + self.verifier_flops

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out.update(policy_tokens=self.policy_tokens, policy_flops=self.policy_flops,
                   policy_flops_served=self.policy_flops_served, verifier_flops=self.verifier_flops,
                   flops=self.flops, flops_served=self.flops_served)
        return out


def policy_flops(params: int, prompt_tokens: float, completion_tokens: float) -> float:
    """The ledger's FLOPs formula for generation: 2 x parameters x tokens computed."""
    return 2.0 * params * (prompt_tokens + completion_tokens)


def verifier_flops(params: int, tokens: float) -> float:
    """The ledger's FLOPs formula for a verifier: 2 x its parameters x the tokens it processed."""
    return 2.0 * params * tokens


class MeteredPolicy:
    """A policy bound to one task and one ledger: turns raw completions into candidates and charges them."""

    def __init__(self, policy: Policy, task: Task, ledger: Ledger):
        self.policy, self.task, self.ledger = policy, task, ledger

    def prompt_for(self, problem: Problem, prefix: Sequence[str] = ()) -> str:
        """The problem prompt followed by the steps so far, each closed by the step delimiter, so that every
        continuation of one partial solution shares an identical prompt prefix (what vLLM's prefix cache needs)."""
        return problem.prompt + prefix_text(prefix, self.task.step_delimiter)

    def generate(self, problem: Problem, params: SamplingParams | Sequence[SamplingParams],
                 prefixes: Sequence[Sequence[str]] = ((),)) -> list[list[Candidate]]:
        """Sample ``params.n`` continuations of each partial solution (``prefixes``; by default one empty one), all
        in one call so the server batches them; ``params`` is shared or given per prefix. Each candidate holds the
        prefix steps followed by the new ones."""
        prompts = [self.prompt_for(problem, prefix) for prefix in prefixes]
        generations = self.policy.generate(prompts, params)
        out = []
        for prefix, gen in zip(prefixes, generations):
            self.ledger.charge_generation(gen.usage, len(gen.completions))
            batch = []
            head = prefix_text(prefix, self.task.step_delimiter)
            for c in gen.completions:
                text = head + c.text
                # a completion cut at max_tokens has no trustworthy final answer: "A:14" cut to "A:1" reads as 1
                answer = None if c.finish_reason == "length" else self.task.extract_answer(text)
                batch.append(Candidate(
                    steps=self.task.split_steps(text), answer=answer, text=text,
                    prompt_tokens=gen.usage.prompt_tokens, completion_tokens=c.completion_tokens,
                    finish_reason=c.finish_reason, logprobs=c.logprobs))
            out.append(batch)
        return out


class MeteredVerifier:
    """A verifier bound to one ledger; charges every call and enforces the verifier contract on what comes back."""

    def __init__(self, verifier: Verifier, ledger: Ledger):
        self.verifier, self.ledger = verifier, ledger
        self.kind = verifier.kind
        self.name = getattr(verifier, "name", type(verifier).__name__)

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        """The verifier's scores of ``candidates``, charged; LabError (one line: the verifier, the problem and the
        fix) when its ``score`` raises or returns what the contract forbids (``search.contracts.check_scores``)."""
        try:
            scores = self.verifier.score(problem, tuple(candidates))
        except LabError:
            raise                      # already one line (a served verifier's unreachable server, say)
        except Exception as err:  # noqa: BLE001 - a plug-in's own bug: name it, the problem and the fix in one line
            raise ScoreError(f"verifier {self.name} raised {type(err).__name__}: {one_line(err)} while scoring "
                             f"problem {problem.id} ({len(candidates)} candidates): fix its score(); find the "
                             f"candidate with lab check-verifier (its probe) or lab offline RUN_DIR (a run's pools)",
                             "raises") from err
        check_scores(self.name, self.kind, candidates, scores, problem_id=problem.id)
        self.ledger.charge_verifier(len(candidates), scores.tokens)
        return scores
