"""Pools for the studies that train models (the verifier scaling study, the train-versus-test frontier): draw a
checkpoint's evaluation pools, read their answers and grades, and score them with a trained verifier in process.

Each study is a command; what they share lives here, so no command imports another.
"""
from __future__ import annotations

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
