"""A sweep as one tidy table: one row per (job, selection rule, budget k).

Every config axis is its own column, read from the plain fields of each job's summary.json (noise parameters
included, never parsed out of a name). Plots read only this table. ``python -m search.collect DIR`` writes it.
"""
from __future__ import annotations

import json
from pathlib import Path

from search.analysis.pool import RULES
from search.build import identity
from search.ledger import policy_flops
import verifiers.ensemble_noise  # noqa: F401  (registers correlated_flip and ensemble_flip: their fields are columns)
from verifiers.noise import noise_fields

NOISE_COLUMNS = noise_fields()
"""Noise parameters of every known family, each a column (empty where the job's noise family has no such
parameter); a new family's ``fields`` become columns without an edit here."""


OPTIONAL_FLOATS = NOISE_COLUMNS + ("noise_seed", "closed_form", "band_lo", "band_hi", "reward_closed_form",
                                   "reward_band_lo", "reward_band_hi", "false_positive_rate", "flops_served",
                                   "flops_policy", "closed_form_diff", "closed_form_p", "closed_form_p_joint",
                                   "reward_closed_form_p_joint")
"""Numeric columns that only some rows fill (a closed form exists only for noise on an exact verifier)."""
NAMED = ("seed", "strategy.seed", "strategy.budget", "fp_cost", "noise.seed", "noise._target_", "noise.family",
         "verifier._target_", "strategy._target_", "task._target_", "policy._target_")
"""Config fields that already have a column of their own (or that the strategy/verifier/noise/task columns name);
every other field that differs between jobs becomes a column named by its dotted path."""


def swept_fields(summaries: list[tuple[str, dict]]) -> list[str]:
    """The config fields that differ between jobs of the same task, strategy, verifier and noise family, other
    than the ones with a column of their own: a plug-in's ``+verifier.x=...`` sweep, a strategy knob, a task
    option. Each becomes a column, so no figure or report averages over jobs whose configs differ."""
    groups: dict[tuple, list[dict]] = {}
    for _, s in summaries:
        key = (s["task"], s["strategy"], s.get("verifier_base"), s.get("noise", {}).get("noise"))
        groups.setdefault(key, []).append(identity(s["config"]))
    named = set(NAMED) | {f"noise.{f}" for f in NOISE_COLUMNS}
    out: dict[str, None] = {}
    for flats in groups.values():
        for key in dict.fromkeys(k for flat in flats for k in flat):
            if key in named or key.startswith("task.difficulty."):
                continue
            if len({repr(flat.get(key)) for flat in flats}) > 1:
                out[key] = None
    return list(out)


def job_rows(summary: dict, job: str, swept: list[str] = ()) -> list[dict]:
    """The rows of one job's summary; ``swept`` are the config fields that differ between the sweep's jobs."""
    cfg = summary["config"]
    flat = identity(cfg)
    noise = summary.get("noise", {"noise": "none"})
    base = {
        "job": job,
        "task": summary["task"],
        "strategy": summary["strategy"],
        "verifier": summary["verifier_base"],
        "noise": noise.get("noise", "none"),
        **{col: noise.get(col) for col in NOISE_COLUMNS},
        "fp_cost": summary.get("fp_cost", 0.0),
        "overrides": " ".join(o for o in summary.get("overrides", []) if not o.startswith("+sweep=")),
        "seed": cfg.get("seed"),
        "pool_seed": cfg.get("strategy", {}).get("seed"),
        "noise_seed": noise.get("seed"),
        "budget": cfg.get("strategy", {}).get("budget"),
        "n_problems": summary["n_problems"],
        "policy": summary["policy_model_id"],
        **{f"difficulty_{k}": v for k, v in cfg.get("task", {}).get("difficulty", {}).items() if k != "_target_"},
        "generation_requests": summary.get("generation_requests"),
        "generated_tokens": summary.get("generated_tokens"),
        "cache_hits": summary.get("cache_hits"),
        "job_wall_s": summary.get("wall_s"),
        **{key: flat.get(key) for key in swept},
    }
    params = summary.get("policy_params")
    return [dict(base, **row, flops_policy=policy_flops(params, row["policy_tokens"], 0) if params else None)
            for row in budget_rows(summary.get("budgets", []))]


def budget_rows(budgets: list[dict]) -> list[dict]:
    """The per-(rule, k) rows of a summary's per-budget table (a pool strategy has every rule at every k, a search
    strategy its own rule at its budget)."""
    rows = []
    for b in budgets:
        for rule in (r for r in RULES if r in b):
            row = dict(selection=rule, k=b["k"], n_problems=b["n_problems"], accuracy=b[rule], accuracy_lo=b[f"{rule}_lo"],
                       accuracy_hi=b[f"{rule}_hi"], closed_form=b.get(f"{rule}_closed_form"),
                       band_lo=b.get(f"{rule}_band_lo"), band_hi=b.get(f"{rule}_band_hi"),
                       closed_form_diff=b.get(f"{rule}_cf_diff"), closed_form_p=b.get(f"{rule}_cf_p"),
                       closed_form_p_joint=b.get(f"{rule}_cf_p_joint"),
                       policy_tokens=b["policy_tokens"], verifier_tokens=b["verifier_tokens"], flops=b["flops"],
                       flops_served=b.get("flops_served"))
            if rule == "accept":
                row.update(reward=b["accept_reward"], reward_lo=b["accept_reward_lo"],
                           reward_hi=b["accept_reward_hi"], reward_closed_form=b.get("accept_reward_closed_form"),
                           reward_closed_form_p_joint=b.get("accept_reward_cf_p_joint"),
                           reward_band_lo=b.get("accept_reward_band_lo"), reward_band_hi=b.get("accept_reward_band_hi"),
                           abstain_rate=b["abstain"], false_positive_rate=b["false_positive"])
            else:   # every other rule always answers: its reward is its accuracy
                row.update(reward=b[rule], reward_lo=b[f"{rule}_lo"], reward_hi=b[f"{rule}_hi"],
                           abstain_rate=0.0, false_positive_rate=None)
            if "difficulty" in b:
                row.update(difficulty_key=b["difficulty_key"], difficulty=b["difficulty"])
            rows.append(row)
    return rows


def read_summaries(sweep_dir: Path) -> list[tuple[str, dict]]:
    """(job directory relative to the sweep, summary) of every finished job, in directory order."""
    paths = sorted(Path(sweep_dir).rglob("summary.json"), key=lambda p: (len(p.parts), str(p)))
    return [(str(p.parent.relative_to(sweep_dir)), json.loads(p.read_text())) for p in paths]


def collect(sweep_dir: Path, by_difficulty: bool = False, summaries: list[tuple[str, dict]] | None = None):
    """The sweep's table as a pandas DataFrame (jobs in directory order); with ``by_difficulty`` the same rows per
    difficulty bin (columns ``difficulty_key`` and ``difficulty``). ``summaries`` saves reading them again."""
    import pandas as pd

    summaries = read_summaries(sweep_dir) if summaries is None else summaries
    swept = swept_fields(summaries)
    rows = []
    for job, summary in summaries:
        if by_difficulty:
            summary = dict(summary, budgets=summary.get("by_difficulty", []))
        rows += job_rows(summary, job, swept)
    table = pd.DataFrame(rows)
    for col in OPTIONAL_FLOATS:     # empty in some jobs: keep them numeric (NaN), never an object column of None
        if col in table:
            table[col] = pd.to_numeric(table[col]).astype(float)
    return table


def write_tables(sweep_dir: Path, out: Path, table=None, summaries=None) -> list[str]:
    """Write results.parquet/.csv (and results_by_difficulty.parquet/.csv when the jobs have difficulty bins) into
    ``out``; one line per table written. ``table`` and ``summaries`` save collecting or reading them again."""
    summaries = read_summaries(sweep_dir) if summaries is None else summaries
    table = collect(sweep_dir, summaries=summaries) if table is None else table
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "results.parquet", index=False)
    table.to_csv(out / "results.csv", index=False)
    lines = [f"{len(table)} rows from {table['job'].nunique()} jobs -> {out / 'results.parquet'}, "
             f"{out / 'results.csv'}"]
    bins = collect(sweep_dir, by_difficulty=True, summaries=summaries)
    if not bins.empty:
        bins.to_parquet(out / "results_by_difficulty.parquet", index=False)
        bins.to_csv(out / "results_by_difficulty.csv", index=False)
        lines.append(f"{len(bins)} rows per difficulty bin -> {out / 'results_by_difficulty.parquet'}")
    return lines
