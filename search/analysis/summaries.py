"""Turn per-problem records into a run's per-budget table (means with bootstrap intervals) and print it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from search.analysis import closed_forms, estimators
from search.analysis.pool import OUTCOMES, RULES

COST_COLUMNS = ("policy_tokens", "verifier_tokens", "flops")
"""Per-problem compute figures averaged (without intervals) at every budget."""


def summarize_budgets(records: Sequence[dict], resamples: int = 1000, seed: int = 0) -> list[dict]:
    """One row per budget k: for each selection rule its mean over problems and a percentile bootstrap interval
    (the same resampled problem sets for every k, so a curve's intervals are consistent), plus mean compute."""
    if not records:
        return []
    ks = records[0]["by_k"]["k"]
    rows = [{"k": k, "n_problems": len(records)} for k in ks]
    for rule in RULES + OUTCOMES:
        values = np.array([r["by_k"][rule] for r in records], dtype=float)
        lo, hi = estimators.bootstrap_ci_matrix(values, n_resamples=resamples, seed=seed)
        for j, row in enumerate(rows):
            row[rule] = float(values[:, j].mean())
            row[f"{rule}_lo"], row[f"{rule}_hi"] = float(lo[j]), float(hi[j])
    se = np.array([r["by_k"]["weighted_mc_se"] for r in records], dtype=float)
    for j, row in enumerate(rows):
        # Monte-Carlo error of the mean over problems (independent draws per problem).
        row["weighted_mc_se"] = float(np.sqrt((se[:, j] ** 2).sum()) / len(records))
        for col in COST_COLUMNS:
            row[col] = float(np.mean([r["by_k"][col][j] for r in records]))
        for col in (c for c in records[0]["by_k"] if c.endswith("_closed_form")):
            row[col] = float(np.mean([r["by_k"][col][j] for r in records]))
    if len(records) >= 2:
        for col in (c for c in records[0]["by_k"] if c.endswith("_closed_form")):
            rule = col[: -len("_closed_form")]
            values = np.array([r["by_k"][rule] for r in records], dtype=float)
            # the simultaneous band of the measured curve (shown in figures)
            lo, hi = estimators.simultaneous_band(values, n_resamples=resamples, seed=seed)
            # the agreement test: per-problem differences from the closed form given each pool, paired over
            # problems, at each k and jointly over k (the band alone has little power)
            test = closed_forms.paired_agreement(values, np.array([r["by_k"][col] for r in records], dtype=float),
                                                 seed=seed)
            for j, row in enumerate(rows):
                row[f"{rule}_band_lo"], row[f"{rule}_band_hi"] = float(lo[j]), float(hi[j])
                row[f"{rule}_cf_diff"], row[f"{rule}_cf_p"] = float(test["mean_diff"][j]), float(test["p"][j])
                row[f"{rule}_cf_p_joint"] = float(test["p_joint"])
    return rows


def summarize_search(records: Sequence[dict], budget: int, rule: str, resamples: int = 1000,
                     seed: int = 0) -> list[dict]:
    """The per-budget table of a search strategy (beam, tree, MCTS, particles): one row, k = its budget, with the
    accuracy of its own answers under ``rule`` (how it picked among its finished solutions) and the mean compute
    each problem's ledger recorded."""
    if not records:
        return []
    correct = np.array([[float(r["correct"])] for r in records])
    lo, hi = estimators.bootstrap_ci_matrix(correct, n_resamples=resamples, seed=seed)
    row = {"k": budget, "n_problems": len(records), rule: float(correct.mean()), f"{rule}_lo": float(lo[0]),
           f"{rule}_hi": float(hi[0])}
    for col in COST_COLUMNS + ("cached_prompt_tokens", "completion_tokens", "policy_requests", "flops_served"):
        row[col] = float(np.mean([r["ledger"].get(col, np.nan) for r in records]))
    return [row]


def summarize_by_difficulty(records: Sequence[dict], key: str, summarize) -> list[dict]:
    """The per-budget rows again for each difficulty bin (problems grouped by ``metadata[key]``), each row tagged
    with its bin; ``summarize`` turns a list of records into rows (summarize_budgets or summarize_search)."""
    bins = sorted({r["metadata"].get(key) for r in records} - {None})
    rows = []
    for value in bins:
        part = [r for r in records if r["metadata"].get(key) == value]
        if len(part) >= 2:
            rows += [dict(row, difficulty_key=key, difficulty=value) for row in summarize(part)]
    return rows


PRINTED = ("coverage", "argmax", "majority", "weighted")
"""The rules in the printed table (summary.json has them all)."""


def format_table(rows: Sequence[dict], ks: Sequence[int] | None = None) -> str:
    """A fixed-width table of the rows whose k is in ``ks`` (all rows when None): the rules of PRINTED that the
    rows have (a search strategy's rows have only its own rule)."""
    rules = [r for r in PRINTED if rows and r in rows[0]] or [r for r in RULES if rows and r in rows[0]]
    head = f"{'k':>4}  " + "".join(f"{rule:<22}" for rule in rules) + f"{'tokens/problem':>15}  {'FLOPs/problem':>13}"
    lines = [head]
    for row in rows:
        if ks is not None and row["k"] not in ks:
            continue
        cells = "".join(f"{row[r]:.3f} [{row[r + '_lo']:.3f},{row[r + '_hi']:.3f}]  " for r in rules)
        lines.append(f"{row['k']:>4}  {cells}{row['policy_tokens']:>15.1f}  {row['flops']:>13.3g}")
    return "\n".join(lines)


def policy_profile(records: Sequence[dict]) -> dict:
    """How useful the policy is as a test subject: per-problem single-sample accuracy spread and the gap between
    coverage and majority vote at the largest budget (DESIGN.md's criteria)."""
    p1 = np.array([r["pool_accuracy"] for r in records], dtype=float)
    last = records[0]["by_k"]["k"][-1]
    cov = float(np.mean([r["by_k"]["coverage"][-1] for r in records]))
    maj = float(np.mean([r["by_k"]["majority"][-1] for r in records]))
    return {"pass@1": float(p1.mean()), "share_pass@1_below_0.1": float((p1 < 0.1).mean()),
            "share_pass@1_above_0.9": float((p1 > 0.9).mean()), f"pass@{last}": cov, f"majority@{last}": maj,
            "coverage_minus_majority": cov - maj}
