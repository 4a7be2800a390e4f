"""Pools for the studies that train models (the verifier scaling study, the train-versus-test frontier): draw a
checkpoint's evaluation pools, read their answers and grades, and score them with a trained verifier in process.

Each study is a command; what they share lives here, so no command imports another.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


def draw_pools(out: Path, max_k: int, overrides: Sequence[str] = (), checkpoint: Path | str | None = None) -> None:
    """The main job's best-of-k run at budget ``max_k`` with the exact outcome oracle into ``out`` (records.jsonl,
    summary.json): every problem's pool of ``max_k`` samples, from ``checkpoint`` (a policy directory, served by its
    own vLLM server) or the config's policy; ``overrides`` are further Hydra overrides (the evaluation set, server
    flags)."""
    from search.build import compose
    from search.engine.runner import run

    job = ["strategy=best_of_k", f"strategy.budget={max_k}", "verifier=outcome_oracle", "noise=none",
           *([f"policy.checkpoint={checkpoint}"] if checkpoint is not None else []), *overrides]
    run(compose(job), out, tuple(job))


def pool_answers(task, stored) -> tuple[dict[str, list], "object"]:
    """The pools' answers by problem (for majority vote) and their outcome table with the grader's labels and no
    scores (for the verifier-free baselines)."""
    import pandas as pd

    answers = {sp.problem.id: [c.answer for c in sp.candidates] for sp in stored}
    rows = [{"problem_id": sp.problem.id, "candidate": i, "level": "outcome", "step": 0, "score": 0.0,
             "label": int(task.grade(sp.problem, c.answer))} for sp in stored for i, c in enumerate(sp.candidates)]
    return answers, pd.DataFrame(rows)


@dataclass
class PolicyPools:
    """One policy's evaluation pools read back for a study: what the frontier and the distillation compare."""

    stored: list
    """The stored pools (``stored_pools.load_pools``), one per problem, in the run's order."""
    ids: list[str]
    """The problem ids in that order: every policy of a study must have the same."""
    answers: dict[str, list]
    """Problem id -> the candidates' answers in pool order (majority vote)."""
    baselines: dict[str, "object"]
    """The verifier-free (problems x k) matrices at k = 1..max_k: ``coverage`` and ``majority``."""
    policy_flops: "object"
    """Mean policy FLOPs per problem at k = 1..max_k (``frontier.flops_at_k`` from the ledgers)."""
    completion_tokens_per_sample: float
    """Mean completion tokens per sample, averaged over problems."""


def read_policy_pools(pools: Path, n_params: int, ks: Sequence[int], order: Sequence[str] | None = None,
                      first: object = None) -> PolicyPools:
    """A policy's pools in ``pools`` (a best-of-k run directory) read back and summarised at ``ks`` = 1..max_k for a
    policy of ``n_params`` parameters. ``order``: the problem ids another policy of the study was measured on
    (``first`` names it in the error); LabError when the problems differ or a pool is smaller than max_k."""
    import numpy as np

    from search.analysis import verifier_scaling as vs
    from search.analysis.frontier import flops_at_k
    from search.contracts import LabError
    from search.engine.stored_pools import load_pools

    task, stored = load_pools(pools)
    ids = [sp.problem.id for sp in stored]
    if order is not None and ids != list(order):
        raise LabError(f"{pools} holds other problems than {first}: every policy must be measured on the same "
                       f"evaluation set (delete {pools} and rerun)")
    if any(len(sp.candidates) < ks[-1] for sp in stored):
        raise LabError(f"{pools} has pools smaller than max_k={ks[-1]} (delete it and rerun)")
    ledgers = [sp.record["ledger"] for sp in stored]
    completion, samples = [lg["completion_tokens"] for lg in ledgers], [lg["policy_samples"] for lg in ledgers]
    answers, plain = pool_answers(task, stored)
    return PolicyPools(stored, ids, answers, vs.baseline_matrices(plain, answers, ks),
                       flops_at_k(n_params, [lg["prompt_tokens"] for lg in ledgers], completion, samples, ks),
                       float(np.mean([c / n for c, n in zip(completion, samples)])))


def verifier_flops_per_sample(params: int, stored) -> float:
    """What a verifier of ``params`` parameters costs per sample of these pools, by the ledger's rule
    (``ledger.verifier_flops``: 2 x parameters x the tokens it reads), averaged over problems; 0 for a free one
    (``params`` 0). The tokens are the tiny PRM's input: every candidate with steps is read once as
    ``prm_model.encode`` gives it to the model (the same input its vLLM server is sent)."""
    if not params:
        return 0.0
    import numpy as np

    from search.ledger import verifier_flops
    from search.training.prm_model import encode

    tokens = float(np.mean([sum(len(encode(sp.problem.prompt, c.steps)[0]) for c in sp.candidates if c.steps)
                            / len(sp.candidates) for sp in stored]))
    return verifier_flops(params, tokens)


def score_pools(checkpoint: Path, task, stored):
    """A trained token-classifier verifier's labelled score table on the pools (``measuring.label_rows``), scored in
    this process: each distinct (prompt, steps) once, with ``train_prm.step_probs`` (the same numbers its pooling
    server returns; tests/test_verifier_scaling.py checks that against the server)."""
    import pandas as pd
    import torch
    from transformers import LlamaForTokenClassification

    from search.contracts import Scores
    from search.engine.measuring import label_rows
    from search.training.prm_model import encode, step_probs
    from verifiers.oracle import ProcessOracle

    torch.set_num_threads(2)
    model = LlamaForTokenClassification.from_pretrained(checkpoint).eval()
    keys = sorted({(sp.problem.prompt, c.steps) for sp in stored for c in sp.candidates if c.steps},
                  key=lambda key: (len(key[0]) + sum(len(step) + 1 for step in key[1]), key))
    probs = dict(zip(keys, step_probs(model, [encode(prompt, steps) for prompt, steps in keys])))
    oracle, rows = ProcessOracle(task), []
    for sp in stored:
        scores = Scores(steps=tuple(tuple(probs[(sp.problem.prompt, c.steps)]) if c.steps else (0.0,)
                                    for c in sp.candidates))
        rows += label_rows(task, sp.problem, sp.candidates, scores, True, oracle)
    return pd.DataFrame(rows)
