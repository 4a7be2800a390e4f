"""The contracts between the lab's parts: problems, candidates, sampling, scores, selections, and the Task, Policy,
Verifier and Strategy protocols.

Every other module speaks in these types. They are plain frozen dataclasses and typing Protocols so that a
third-party verifier, policy or strategy needs nothing from the lab but these names. The two checks that enforce a
contract at run time (``check_scores`` for verifiers, ``prefix_text`` for how a partial solution is written) live
here too, so every caller applies the same rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Protocol, Sequence, runtime_checkable


class LabError(Exception):
    """A user-facing mistake (bad config, missing file, unreachable server): printed as one line, exit code 2.

    The message must name the thing that is wrong and the fix.
    """


@dataclass(frozen=True)
class Problem:
    """One task instance."""

    id: str
    """Stable identifier, unique within a task's split (also the key that records and caches use)."""
    prompt: str
    """The exact text sent to the policy, rendered once by the task."""
    reference: str
    """The reference final answer. Read only by graders and oracle verifiers, never by strategies."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Task-specific facts such as difficulty knobs (e.g. ``{"n_ops": 3}``); copied into records."""


@dataclass(frozen=True)
class TokenLogprobs:
    """The policy's own log-probabilities of one sample's generated tokens (asked for with ``policy.logprobs=N``)."""

    token: tuple[float, ...]
    """Log-probability of each generated token, in order."""
    top: tuple[tuple[float, ...], ...]
    """At each position, the log-probabilities of the N most likely tokens, highest first (N = ``policy.logprobs``;
    the sampled token may be outside them)."""


@dataclass(frozen=True)
class Candidate:
    """One (possibly partial) solution produced by the policy."""

    steps: tuple[str, ...]
    """The solution split into steps (one string per step, without the delimiter). A whole-answer candidate
    produced in one call still has its steps split by the task's delimiter."""
    answer: str | None
    """The extracted final answer, or None when the text has no well-formed final answer."""
    text: str
    """The raw completion text as the policy returned it."""
    prompt_tokens: int
    """Prompt tokens of the request that produced this candidate (shared by all n samples of that request)."""
    completion_tokens: int
    """Tokens generated for this candidate alone."""
    finish_reason: str
    """Why generation stopped: ``stop`` (EOS or a stop string), ``length`` (max_tokens reached), or another
    engine-specific reason passed through unchanged."""
    logprobs: TokenLogprobs | None = None
    """The policy's log-probabilities of the tokens this candidate's last generation produced (a continued partial
    solution: only the continuation), or None when the policy was not asked for them (``policy.logprobs``)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample from the policy. Field names and meanings follow the OpenAI-compatible API that vLLM serves."""

    n: int = 1
    """Samples per prompt, drawn in one request so the prompt is processed once. At least 1."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy. At least 0."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    max_tokens: int = 128
    """Most tokens generated per sample. At least 1."""
    stop: tuple[str, ...] = ()
    """Strings that end a sample (not included in the text). A step-wise strategy passes the step delimiter."""
    seed: int | None = None
    """Per-request seed; the same seed, prompt and parameters give the same samples on the same server."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise LabError(f"sampling n={self.n} must be at least 1")
        if self.temperature < 0:
            raise LabError(f"sampling temperature={self.temperature} must be >= 0")
        if not 0 < self.top_p <= 1:
            raise LabError(f"sampling top_p={self.top_p} must be in (0, 1]")
        if self.max_tokens < 1:
            raise LabError(f"sampling max_tokens={self.max_tokens} must be at least 1")


def per_prompt(params: SamplingParams | Sequence[SamplingParams], n_prompts: int) -> list[SamplingParams]:
    """The sampling parameters of each prompt of a ``generate`` call (one shared, or one per prompt)."""
    if isinstance(params, SamplingParams):
        return [params] * n_prompts
    params = list(params)
    if len(params) != n_prompts:
        raise ValueError(f"{len(params)} SamplingParams for {n_prompts} prompts: give one, or one per prompt")
    return params


@dataclass(frozen=True)
class Usage:
    """Token counts that one generation request consumed, as the server reported them."""

    prompt_tokens: int
    """Prompt tokens processed for the request (counted once, however many samples it asked for)."""
    cached_prompt_tokens: int
    """Of those, tokens served from the prefix cache (0 when the server does not report it)."""
    completion_tokens: int
    """Tokens generated across all samples of the request."""


@dataclass(frozen=True)
class Completion:
    """One raw sample as the server returned it (the task turns it into a Candidate)."""

    text: str
    """The generated text, without the stop string that ended it."""
    completion_tokens: int
    """Tokens generated for this sample."""
    finish_reason: str
    """``stop`` (EOS or a stop string), ``length`` (max_tokens reached), or the engine's own reason."""
    logprobs: TokenLogprobs | None = None
    """Per-token log-probabilities, when the policy was asked for them (``policy.logprobs``), else None."""


@dataclass(frozen=True)
class Generation:
    """What one prompt of a ``Policy.generate`` call returned."""

    completions: tuple[Completion, ...]
    """The n samples, in the order the server returned them."""
    usage: Usage
    """Token counts for the whole request."""


@dataclass(frozen=True)
class Scores:
    """A verifier's verdict on the candidates of one problem."""

    steps: tuple[tuple[float, ...], ...]
    """One tuple per candidate. An outcome verifier gives one score (the whole solution); a process verifier gives
    one score per step of that candidate. Every score is a float in [0, 1]."""
    tokens: int = 0
    """Tokens the verifier processed to produce these scores (0 for an exact oracle)."""

    @property
    def final(self) -> tuple[float, ...]:
        """The score of each whole candidate: the last step's score (for outcome verifiers, their only score)."""
        return tuple(s[-1] if s else 0.0 for s in self.steps)


@runtime_checkable
class Task(Protocol):
    """A source of problems and the one place that knows how to read and grade a solution."""

    name: str
    step_delimiter: str

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        """The problems of a split (``train`` or ``eval``), the first n when n is given."""

    def split_steps(self, text: str) -> tuple[str, ...]:
        """Split a completion into steps."""

    def extract_answer(self, text: str) -> str | None:
        """The final answer in a completion, or None when there is no well-formed one."""

    def grade(self, problem: Problem, answer: str | None) -> bool:
        """Whether an extracted answer is correct. The only grader of the lab."""

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> tuple[bool, ...]:
        """For each step, whether it is right (matches the reference solution's step at that position)."""


@runtime_checkable
class Policy(Protocol):
    """Something that samples continuations: a vLLM server, a pool of replicas, or a test fake."""

    model_id: str
    """Identity of the model (served name plus checkpoint hash or revision); part of every cache key."""
    n_params: int
    """Parameter count, for the FLOPs formula of the ledger."""

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        """Sample ``params.n`` continuations of every prompt; one Generation per prompt, in order. ``params`` is
        one SamplingParams for every prompt, or a sequence with one per prompt (a step-wise search gives each
        partial solution its own seed, so that its continuations do not share the random stream of another's).

        Implementations send the prompts concurrently (the server batches them) and raise LabError when the
        server cannot be reached after retries."""


@runtime_checkable
class Verifier(Protocol):
    """Scores the candidates of one problem. See ``verifiers/`` for implementations."""

    kind: Literal["outcome", "process"]
    """``process`` verifiers score every step; ``outcome`` verifiers only whole solutions."""
    n_params: int
    """Parameters of the model behind the verifier (0 for exact oracles), for the FLOPs formula."""

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        """Scores for the candidates, in order. Must not mutate its inputs."""

    # A verifier may also define ``counts() -> dict[str, int]``: what it did that a reader of the run's numbers should
    # know (a served verifier's candidates cut at its context, undecided verdicts), counted in this process; the run
    # writes them to summary.json as ``verifier_counts`` and prints the nonzero ones.


@dataclass(frozen=True)
class Selection:
    """What a strategy returns for one problem."""

    answer: str | None
    """The strategy's final answer (None when it abstains)."""
    candidates: tuple[Candidate, ...]
    """Every candidate the strategy kept (for best-of-k: the whole pool)."""
    scores: Scores | None
    """The verifier's scores of ``candidates``, when the strategy scored them."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Strategy-specific facts worth recording (JSON-serialisable)."""


def prefix_text(steps: Sequence[str], delimiter: str) -> str:
    """The text of a partial solution: every step closed by the task's step delimiter. Continuations of one partial
    solution therefore share an identical prompt prefix (what vLLM's prefix cache needs), and the text of a
    continued candidate is this prefix followed by what the policy generated."""
    return "".join(step + delimiter for step in steps)


class ScoreError(LabError):
    """A verifier's ``score`` call broke the contract: the message names the verifier, the problem, the candidate,
    the rule and the fix; ``rule`` and ``candidate`` say the same for a program (the contract checker)."""

    def __init__(self, message: str, rule: str, candidate: int | None = None):
        super().__init__(message)
        self.rule = rule
        """The broken rule: ``raises``, ``shapes`` or ``ranges`` (the names of ``verifiers.contract.CHECKS``)."""
        self.candidate = candidate
        """The index of the offending candidate in the call, or None when the fault is the whole answer."""


def _is_score(x: object) -> bool:
    # a Python float or int (numpy.float64 is a float); numpy.float32 or a tensor would break the JSON records
    return isinstance(x, (float, int)) and not isinstance(x, bool)


def check_scores(name: str, kind: str, candidates: Sequence[Candidate], scores: Scores,
                 ranges: bool = True, problem_id: str | None = None) -> None:
    """Enforce the verifier contract on one ``score`` call: a ``Scores``; one tuple per candidate (never a flat
    tuple of floats); one score per step for a process verifier (one for a candidate without steps) or one score for
    an outcome verifier; and (with ``ranges``) every score a finite float in [0, 1] and ``tokens`` an int >= 0.
    Raises ScoreError naming the verifier, the problem (``problem_id``), the candidate, the rule and the fix. The one
    place the rule lives: the run (``search.ledger.MeteredVerifier``) and the contract checker both call it."""
    where = f"verifier {name}" + (f" on problem {problem_id}" if problem_id is not None else "")
    if not isinstance(scores, Scores):
        raise ScoreError(f"{where}: score() returned {type(scores).__name__}; fix: return "
                         "search.contracts.Scores(steps=..., tokens=...)", "shapes")
    rows = scores.steps
    if not isinstance(rows, (tuple, list)):
        raise ScoreError(f"{where}: Scores.steps is a {type(rows).__name__}; fix: give a tuple with one tuple of scores "
                         "per candidate", "shapes")
    if rows and all(_is_score(r) for r in rows):
        raise ScoreError(f"{where}: Scores.steps is a flat tuple of {len(rows)} numbers; fix: give one tuple per "
                         "candidate, e.g. steps=tuple((s,) for s in outcome_scores)", "shapes",
                         0 if candidates else None)
    if len(rows) != len(candidates):
        raise ScoreError(f"{where}: {len(rows)} score tuples for {len(candidates)} candidates; fix: return "
                         "one tuple per candidate, in order (and steps=() for no candidates)", "shapes")
    for i, (cand, row) in enumerate(zip(candidates, rows)):
        at = f"{where}, candidate {i}"
        if not isinstance(row, (tuple, list)):
            raise ScoreError(f"{at}: its row is {type(row).__name__} {row!r}, not a tuple of scores; fix: give "
                             f"({row!r},) for an outcome score", "shapes", i)
        want = max(1, len(cand.steps)) if kind == "process" else 1
        if len(row) != want:
            fix = ("a process verifier gives one score per step (one for a candidate without steps)"
                   if kind == "process" else "an outcome verifier gives exactly one score per candidate")
            raise ScoreError(f"{at} ({kind}): {len(row)} scores for a candidate with {len(cand.steps)} steps; "
                             f"fix: {fix}", "shapes", i)
        if not ranges:
            continue
        for x in row:
            if not _is_score(x):
                raise ScoreError(f"{at}: score {x!r} is a {type(x).__name__}; fix: give a Python float (float(x))",
                                 "ranges", i)
            if math.isnan(x):
                raise ScoreError(f"{at}: score is NaN; fix: give a finite float in [0, 1] (map a missing score to 0.0)",
                                 "ranges", i)
            if not 0.0 <= x <= 1.0:
                raise ScoreError(f"{at}: score {x!r} is outside [0, 1]; fix: clip it (min(1.0, max(0.0, s))) or map it "
                                 "into [0, 1] (a logit through a sigmoid)", "ranges", i)
    if ranges and (not isinstance(scores.tokens, int) or isinstance(scores.tokens, bool) or scores.tokens < 0):
        raise ScoreError(f"{where}: Scores.tokens is {scores.tokens!r}; fix: give the int >= 0 of tokens the verifier "
                         "read (0 without a model)", "ranges")


StrategyKind = Literal["pool", "search"]
"""``pool``: the strategy draws one pool per problem and the runner evaluates every budget k <= its size from it
(best-of-k with every selection rule). ``search``: the strategy spends its own ``budget`` and reports that one
point (beam search, DVTS, MCTS, particle filtering)."""


@runtime_checkable
class Strategy(Protocol):
    """How a budget of policy and verifier calls is spent on one problem. A strategy never counts compute (the
    metered policy and verifier charge the ledger) and never grades (the runner does, through the task)."""

    name: ClassVar[str]
    """The strategy's name in records, tables and figures."""
    kind: ClassVar[StrategyKind]
    """Pool (evaluated at every k from one pool) or search (reported at its own budget); see ``StrategyKind``."""
    budget: int
    """The budget knob every strategy shares, in samples per problem (the units of best-of-k)."""
    selection: str
    """How the final answer is picked: argmax | majority | weighted (``search.strategies.selection``)."""

    def check_verifier(self, verifier: Verifier) -> None:
        """Raise LabError when ``verifier`` cannot serve this strategy (a step-wise search needs a process one)."""

    def solve(self, problem: Problem, policy: Any, verifier: Any) -> Selection:
        """Spend the budget on ``problem`` through a metered policy and verifier (``search.ledger``); the
        selection's candidates are the pool (kind ``pool``) or the solutions the search kept (kind ``search``)."""


@runtime_checkable
class PoolStrategy(Strategy, Protocol):
    """A strategy of kind ``pool``: it also says which budgets its pool can evaluate."""

    def check_budgets(self, budgets: list[int]) -> None:
        """Raise LabError when a budget cannot be evaluated from this strategy's pool."""
