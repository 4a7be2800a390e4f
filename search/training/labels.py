"""Process labels without a human: Monte-Carlo rollouts from every step of the policy's own solutions.

    python -m search.prm_labels --problems 2500 --out prm_labels.jsonl     # the command (lab labels) that runs it

The recipe of Math-Shepherd (Wang et al., 2024): sample solutions of training-split problems, and for every step
continue the solution ``rollouts`` times from right after that step. The step's *soft* label is the share of those
completions whose final answer the task grades correct (an estimate of the prefix's value under the policy); its
*hard* label is whether any of them is. The last step needs no rollouts: its label is whether the solution's own
answer is right. The exact step checker of the task is never used to make a label, only to report how well the
labels agree with it (``agreement``).

Every rollout request is seeded from the prefix text, so identical prefixes (common: many samples start alike) share
one request, a rerun gives the same labels, and the generation cache answers a rerun without the server.
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from search.contracts import Candidate, LabError, Policy, Problem, SamplingParams, Task, prefix_text
from search.seeding import derive_seed
from verifiers.oracle import ProcessOracle


@dataclass(frozen=True)
class LabeledSolution:
    """One sampled solution with a label per step."""

    problem_id: str
    """The training problem it solves."""
    prompt: str
    """The problem's prompt, exactly as the policy saw it."""
    steps: tuple[str, ...]
    """The solution's steps (the task's split of the sampled text)."""
    soft: tuple[float, ...]
    """Per step: the share of rollouts from right after the step that end in a correct answer (the last step: 1.0
    when the solution's own answer is right, else 0.0); empty when the labels were made with no rollouts."""
    hard: tuple[int, ...]
    """Per step: 1 when at least one rollout (or, for the last step, the solution itself) is correct, else 0; empty
    when the labels were made with no rollouts."""
    exact: tuple[int, ...]
    """Per step: 1 while every step so far matches the reference solution (the task's step checker; for the
    agreement report only, never an input to training)."""
    correct: bool
    """Whether the solution's own final answer is right."""


def rollout_prompt(task: Task, problem: Problem, steps: Sequence[str]) -> str:
    """The prompt that continues a solution right after its last step (problem prompt, steps, delimiter)."""
    return problem.prompt + prefix_text(steps, task.step_delimiter)


def label_solutions(task: Task, policy: Policy, problems: Sequence[Problem], samples: int = 4, rollouts: int = 8,
                    temperature: float = 1.0, max_tokens: int = 96, seed: int = 0,
                    batch: int = 256) -> list[LabeledSolution]:
    """Sample ``samples`` solutions per problem and label every step by ``rollouts`` continuations.

    ``rollouts=0`` samples and grades only: every solution keeps its exact step labels and its outcome, with empty
    ``soft`` and ``hard`` (the data of an outcome reward model, or of a PRM on exact step labels).

    Requests go to the policy in batches of ``batch`` prompts (each asking for n samples in one request), so the
    server sees many at once; identical prefixes are sent once."""
    if samples < 1 or rollouts < 0:
        raise LabError(f"samples={samples} must be at least 1 and rollouts={rollouts} at least 0")
    sample_params = [SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens,
                                    seed=derive_seed(seed, "prm-sample", p.id)) for p in problems]
    generations = _batched(policy, [p.prompt for p in problems], sample_params, batch)

    solutions: list[tuple[Problem, tuple[str, ...], bool]] = []
    for problem, gen in zip(problems, generations):
        for comp in gen.completions:
            steps = task.split_steps(comp.text)
            if steps:
                solutions.append((problem, steps, task.grade(problem, task.extract_answer(comp.text))))

    owner = {rollout_prompt(task, p, steps[:i + 1]): p for p, steps, _ in solutions for i in range(len(steps) - 1)
             if rollouts}
    prefixes = sorted(owner)
    params = [SamplingParams(n=rollouts, temperature=temperature, max_tokens=max_tokens,
                             seed=derive_seed(seed, "prm-rollout", prefix)) for prefix in prefixes]
    values: dict[str, float] = {}
    for prefix, gen in zip(prefixes, _batched(policy, prefixes, params, batch)):
        problem = owner[prefix]
        wins = sum(task.grade(problem, task.extract_answer(prefix[len(problem.prompt):] + c.text))
                   for c in gen.completions)
        values[prefix] = wins / len(gen.completions)

    oracle = ProcessOracle(task)          # the exact prefix labels, for the agreement report only
    out = []
    for problem, steps, correct in solutions:
        soft = ([values[rollout_prompt(task, problem, steps[:i + 1])] for i in range(len(steps) - 1)]
                + [1.0 if correct else 0.0]) if rollouts else []
        exact = tuple(int(x) for x in oracle.score(problem, [_as_candidate(steps)]).steps[0])
        out.append(LabeledSolution(problem.id, problem.prompt, steps, tuple(soft), tuple(int(v > 0) for v in soft),
                                   exact, correct))
    return out


def _as_candidate(steps: tuple[str, ...]) -> Candidate:
    """A candidate holding only steps (all the process oracle reads)."""
    return Candidate(steps=steps, answer=None, text="", prompt_tokens=0, completion_tokens=0, finish_reason="stop")


def _batched(policy: Policy, prompts: Sequence[str], params: Sequence[SamplingParams], batch: int) -> list:
    from tqdm import tqdm

    chunks = [(prompts[i:i + batch], params[i:i + batch]) for i in range(0, len(prompts), batch)]
    out = []
    with ThreadPoolExecutor(max_workers=2) as pool:   # two chunks in flight keep the server's queue full
        for gens in tqdm(pool.map(lambda c: policy.generate(*c), chunks), total=len(chunks), unit="batch",
                         desc=f"{len(prompts)} prompts", file=sys.stderr, disable=None):
            out.extend(gens)
    return out


def agreement(labels: Sequence[LabeledSolution]) -> dict:
    """How well the Monte-Carlo labels agree with the exact step checker, over the steps that needed rollouts (all
    but the last of each solution): accuracy, precision and recall of the hard label, and the mean soft label on
    steps the checker calls right and wrong."""
    pairs = [(s.hard[i], s.soft[i], s.exact[i]) for s in labels if s.hard for i in range(len(s.steps) - 1)]
    if not pairs:
        return {"solutions": len(labels), "steps": 0,
                "exact_right_share": _share(e for s in labels for e in s.exact),
                "solution_accuracy": _share(s.correct for s in labels)}
    tp = sum(h and e for h, _, e in pairs)
    fp = sum(h and not e for h, _, e in pairs)
    fn = sum(e and not h for h, _, e in pairs)
    right = [soft for _, soft, e in pairs if e]
    wrong = [soft for _, soft, e in pairs if not e]
    return {
        "solutions": len(labels),
        "steps": len(pairs),
        "exact_right_share": len(right) / len(pairs),
        "hard_accuracy": sum(h == e for h, _, e in pairs) / len(pairs),
        "hard_false_positives": fp,
        "hard_false_negatives": fn,
        "hard_precision": tp / (tp + fp) if tp + fp else None,
        "hard_recall": tp / (tp + fn) if tp + fn else None,
        "soft_mean_on_right": sum(right) / len(right) if right else None,
        "soft_mean_on_wrong": sum(wrong) / len(wrong) if wrong else None,
        "solution_accuracy": sum(s.correct for s in labels) / len(labels),
    }


def _share(flags) -> float | None:
    """The share of true values, None when there are none."""
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


def write_jsonl(labels: Sequence[LabeledSolution], path: str | Path) -> None:
    """One JSON object per solution (the fields of LabeledSolution), written to a temporary file then renamed."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        for s in labels:
            fh.write(json.dumps(asdict(s)) + "\n")
    tmp.replace(path)


def read_jsonl(path: str | Path) -> list[LabeledSolution]:
    """The labels written by ``write_jsonl``; LabError naming the line when one is malformed."""
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            try:
                d = json.loads(line)
                out.append(LabeledSolution(d["problem_id"], d["prompt"], tuple(d["steps"]), tuple(d["soft"]),
                                           tuple(d["hard"]), tuple(d["exact"]), bool(d["correct"])))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise LabError(f"{path}:{n}: not a label line ({err}); regenerate it with "
                               f"python -m search.prm_labels") from None
    return out


def label_tiny_policy(problems: int, samples: int, rollouts: int, seed: int = 0, cache: str | None = None,
                      policy_url: str | None = None) -> list[LabeledSolution]:
    """``label_solutions`` of the first ``problems`` training problems of the arithmetic task by the shipped tiny
    policy: on a managed vLLM server (or the one at ``policy_url``), behind the generation cache at ``cache``."""
    from search.serving.cache import CachedPolicy, GenerationCache
    from search.serving.checkpoint import SHIPPED, count_params
    from search.serving.clients import managed_policy, remote_policy
    from search.tasks.arith import ArithTask

    if policy_url:
        policy = remote_policy([policy_url], "tiny-policy", n_params=count_params(SHIPPED["tiny-policy"]))
    else:
        policy = managed_policy("tiny-policy")
    if cache:
        policy = CachedPolicy(policy, GenerationCache(cache))
    task = ArithTask()
    return label_solutions(task, policy, task.problems("train", problems), samples, rollouts, seed=seed)

