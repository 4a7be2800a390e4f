"""A finished run's pools as the input of verifier development: no policy, no server.

A run directory's ``records.jsonl`` keeps every candidate of every problem (text, extracted answer, grade, tokens,
finish reason) and ``run_config.json`` the config that made them, so the task and its problems can be rebuilt and any
verifier can score the same candidates again. Every score goes through ``search.ledger.MeteredVerifier``, the rule the
run applies, so a verifier that passes here fails in no run on these pools; the table and the numbers are those of
``search.engine.measuring`` and ``search.analysis`` (AUROC within a problem, matched noise, best-of-k curves).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from search.analysis.pool import evaluate_pool
from search.analysis.summaries import summarize_budgets
from search.analysis.verifier_metrics import summarize
from search.contracts import Candidate, LabError, Problem, Task, Verifier
from search.engine.measuring import label_rows
from search.engine.records import CONFIG_FILE, RecordFile
from search.ledger import Ledger, MeteredVerifier
from search.seeding import derive_seed


@dataclass
class StoredPool:
    """One problem of a finished run, with its candidates rebuilt."""

    problem: Problem
    """The problem, rebuilt by the run's own task."""
    candidates: tuple[Candidate, ...]
    """The candidates the run kept, in record order (the pool of a pool strategy)."""
    record: dict
    """The run's record of the problem (grades, tokens, ledger)."""


def run_config(run_dir: Path) -> dict:
    """The config that made a run directory (``run_config.json``, else its summary's)."""
    for path, pick in ((run_dir / CONFIG_FILE, lambda d: d), (run_dir / "summary.json", lambda d: d.get("config"))):
        if path.exists():
            found = pick(json.loads(path.read_text()))
            if found:
                return found
    raise LabError(f"{run_dir} has no {CONFIG_FILE} or summary.json: give the directory of a finished run "
                   f"(lab run writes both beside records.jsonl)")


def load_pools(run_dir: Path) -> tuple[Task, list[StoredPool]]:
    """The run's task (built from its config) and every recorded problem's pool."""
    from omegaconf import OmegaConf

    from search.build import build_task

    run_dir = Path(run_dir)
    if not (run_dir / "records.jsonl").exists():
        raise LabError(f"{run_dir} has no records.jsonl: give the directory of a run (lab run ... hydra.run.dir=DIR)")
    task = build_task(OmegaConf.create(run_config(run_dir)))
    records = RecordFile(run_dir / "records.jsonl").records
    if not records:
        raise LabError(f"{run_dir}/records.jsonl has no finished problem: let the run finish at least one")
    problems = {p.id: p for p in task.problems("eval", None)}
    order = {pid: i for i, pid in enumerate(problems)}
    pools = []
    # in the eval split's order, as the run's summary has them (records are in the order problems finished)
    for rec in sorted(records, key=lambda r: order.get(r["problem_id"], -1)):
        problem = problems.get(rec["problem_id"])
        if problem is None:
            raise LabError(f"problem {rec['problem_id']} of {run_dir} is not in task {task.name}'s eval split as "
                           f"built from its run_config.json: was the task file changed? rerun, or restore it")
        pool, requests = rec["pool"], max(1, rec["ledger"].get("policy_requests", 1))
        prompt_tokens = rec["ledger"].get("prompt_tokens", 0) // requests
        cands = tuple(Candidate(steps=task.split_steps(text), answer=answer, text=text, prompt_tokens=prompt_tokens,
                                completion_tokens=tokens, finish_reason=finish)
                      for text, answer, tokens, finish in zip(pool["text"], pool["answer"],
                                                              pool["completion_tokens"], pool["finish_reason"]))
        pools.append(StoredPool(problem, cands, rec))
    return task, pools


def score_pools(verifier: Verifier, pools: list[StoredPool]):
    """Score every pool through the run's contract check; returns (scores per pool, verifier tokens per pool).
    Raises LabError (a ``ScoreError`` naming the problem and candidate) at the first call that breaks the contract."""
    out, tokens = [], []
    for stored in pools:
        ledger = Ledger(policy_params=0, verifier_params=verifier.n_params)
        out.append(MeteredVerifier(verifier, ledger).score(stored.problem, stored.candidates))
        tokens.append(ledger.verifier_tokens)
    return out, tokens


def budgets_of(pools: list[StoredPool]) -> list[int]:
    """The budgets a pool of the smallest size allows: powers of two and that size."""
    n = min(len(p.candidates) for p in pools)
    ks = [2**i for i in range(n.bit_length())]
    return ks + ([n] if n and ks[-1] != n else [])


def measure_pools(task: Task, verifier: Verifier, pools: list[StoredPool], threshold: float = 0.5,
                  fp_cost: float = 1.0, resamples: int = 1000, seed: int = 0, weighted_draws: int = 2000):
    """Score the stored pools with ``verifier`` and measure it: the labelled table (``search.engine.measuring``),
    the quality summary (AUROC pooled and within a problem, rates at ``threshold``, matched flip and Gaussian noise)
    and the per-budget table of best-of-k on these pools with its scores (``summarize_budgets``, as a run has)."""
    import pandas as pd

    from verifiers.oracle import ProcessOracle

    pools = [p for p in pools if p.candidates]
    if not pools:
        raise LabError("every stored pool is empty: give a run whose problems kept candidates")
    scores, tokens = score_pools(verifier, pools)
    steps_known = verifier.kind == "process" and getattr(task, "has_step_checker", True)
    oracle = ProcessOracle(task)
    rows = [r for stored, s in zip(pools, scores)
            for r in label_rows(task, stored.problem, stored.candidates, s, steps_known, oracle)]
    table = pd.DataFrame(rows)
    quality = summarize(table, {
        "verifier": getattr(verifier, "name", type(verifier).__name__), "verifier_kind": verifier.kind,
        "verifier_params": verifier.n_params, "n_problems": len(pools), "threshold": float(threshold),
        "samples": min(len(p.candidates) for p in pools),
        "verifier_tokens_per_candidate": sum(tokens) / max(1, sum(len(p.candidates) for p in pools))})
    ks = budgets_of(pools)
    evaluated = []
    for stored, s, t in zip(pools, scores, tokens):
        rec = stored.record
        by_k = evaluate_pool(
            rec["pool"]["answer"], rec["pool"]["correct"], list(s.final), ks,
            prompt_tokens=stored.candidates[0].prompt_tokens, completion_tokens=rec["pool"]["completion_tokens"],
            verifier_tokens=t, policy_params=rec["ledger"].get("policy_params", 0),
            verifier_params=verifier.n_params, fp_cost=fp_cost, weighted_draws=weighted_draws,
            seed=derive_seed(seed, "weighted", stored.problem.id))
        evaluated.append({"by_k": by_k})
    return table, quality, summarize_budgets(evaluated, resamples=resamples, seed=seed)
