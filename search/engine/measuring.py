"""Score a pool with a verifier and label every score with the exact oracles: the table behind every verifier
measurement (``python -m search.measure``, the verifier study, offline checks).

The pool is the one best-of-k draws (its own ``solve``, with the same config and seeds, so the generation cache
answers a sweep's pools). Every candidate is scored by the verifier under test and labelled by the task: at the
*outcome* level the label is the grader's verdict on the final answer and the score is the verifier's whole-solution
score (``Scores.final``); at the *step* level (process verifiers only) the label of step i is whether steps 1..i all
match the reference (the process oracle) and the score is the verifier's score of step i.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import DictConfig

from search.analysis.verifier_metrics import summarize
from search.build import build_policy, build_strategy, build_task, build_verifier
from search.contracts import LabError
from search.engine.records import write_json_atomic
from verifiers.oracle import ProcessOracle


def label_rows(task, problem, pool, scores, steps_known: bool, oracle) -> list[dict]:
    """The labelled rows of one problem's scored pool: one outcome row per candidate (its final score and the
    grader's verdict) and, when ``steps_known``, one step row per step (its score and the process oracle's label)."""
    labels = oracle.score(problem, pool).steps if steps_known else ()
    base = {"problem_id": problem.id, "difficulty": problem.metadata.get(getattr(task, "difficulty_key", ""))}
    rows = []
    for i, (cand, steps) in enumerate(zip(pool, scores.steps)):
        rows.append({**base, "candidate": i, "level": "outcome", "step": len(steps) - 1,
                     "score": scores.final[i], "label": int(task.grade(problem, cand.answer))})
        if steps_known and cand.steps:
            rows += [{**base, "candidate": i, "level": "step", "step": j, "score": s, "label": int(right)}
                     for j, (s, right) in enumerate(zip(steps, labels[i]))]
    return rows


def measure(cfg: DictConfig) -> tuple["object", dict]:
    """Score the eval pool with ``cfg.verifier`` (with ``cfg.noise``, if any) and label it; returns the rows (a
    DataFrame) and the quality summary."""
    import pandas as pd

    from search.ledger import Ledger, MeteredPolicy, MeteredVerifier

    task = build_task(cfg)
    strategy = build_strategy(cfg)
    if strategy.name != "best_of_k":
        raise LabError(f"search.measure draws best-of-k's pool; got strategy={strategy.name}: use "
                       f"strategy=best_of_k (strategy.budget sets the samples per problem)")
    verifier, _ = build_verifier(cfg, task)
    policy = build_policy(cfg)
    problems = task.problems("eval", cfg.n_problems)
    steps_known = verifier.kind == "process" and getattr(task, "has_step_checker", True)
    oracle = ProcessOracle(task)          # the step labels: 1 while every step so far is right

    def one(problem):
        ledger = Ledger(policy_params=policy.n_params, verifier_params=verifier.n_params)
        chosen = strategy.solve(problem, MeteredPolicy(policy, task, ledger), MeteredVerifier(verifier, ledger))
        return label_rows(task, problem, chosen.candidates, chosen.scores, steps_known, oracle), ledger.verifier_tokens

    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        results = list(pool.map(one, problems))
    table = pd.DataFrame([r for rows, _ in results for r in rows])
    quality = {"verifier": getattr(verifier, "name", type(verifier).__name__), "verifier_kind": verifier.kind,
               "verifier_params": verifier.n_params, "policy_model_id": policy.model_id,
               "n_problems": len(problems), "samples": strategy.budget, "threshold": float(cfg.measure.threshold),
               "verifier_tokens_per_candidate": sum(t for _, t in results) / max(1, len(problems) * strategy.budget)}
    return table, summarize(table, quality)


def write(out_dir: Path, table, quality: dict) -> None:
    """The rows (``verifier_scores.parquet``) and the numbers (``verifier_quality.json``), into ``out_dir``; the
    figures are drawn from them by ``plots.verifier_quality.quality_figures``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_dir / "verifier_scores.parquet", index=False)
    write_json_atomic(out_dir / "verifier_quality.json", quality)
