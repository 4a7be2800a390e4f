"""Coverage (pass@k) against k with an exponentiated power law ``log(coverage) = a k^b`` fitted on small k and
extrapolated to the rest, so the tail's prediction can be checked against its measurement."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, budget_axis, pyplot, save_figure
from search.analysis.fits import fit_coverage_power_law



def fit_budgets(ks) -> list[int]:
    """The budgets the fit uses: the smaller half of the table's budgets (at least three, leaving at least one to
    predict): 1..8 of 1..64."""
    ks = sorted(int(k) for k in ks)
    n_fit = min(max(3, -(-len(ks) // 2)), len(ks) - 1)
    return ks[:n_fit]


def coverage_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Coverage per k, averaged over distinct pools (coverage does not depend on the verifier, so jobs that share a
    pool seed share their coverage; each pool counts once)."""
    cov = table[table["selection"] == "coverage"]
    keys = [c for c in ("pool_seed", "budget", "n_problems") if c in cov]
    per_pool = cov.groupby(keys + ["k"], as_index=False, dropna=False)[["accuracy", "accuracy_lo", "accuracy_hi"]].first()
    return per_pool.groupby("k", as_index=False).agg(accuracy=("accuracy", "mean"), lo=("accuracy_lo", "min"),
                                                     hi=("accuracy_hi", "max"))


def coverage_tail_check(table: pd.DataFrame) -> tuple[object, pd.DataFrame] | None:
    """The fit on ``fit_budgets`` and, for every larger budget, the prediction, the measurement with its interval,
    and whether the prediction lies inside it; None when the table has fewer than four budgets."""
    c = coverage_curve(table)
    if len(c) < 4:
        return None
    fit_max_k = fit_budgets(c["k"])[-1]
    try:
        fit = fit_coverage_power_law(c["k"], c["accuracy"], fit_max_k)
    except ValueError:
        return None
    tail = c[c["k"] > fit_max_k].assign(predicted=lambda d: fit.predict(d["k"]))
    tail = tail.assign(error=tail["predicted"] - tail["accuracy"],
                       inside=(tail["predicted"] >= tail["lo"]) & (tail["predicted"] <= tail["hi"]))
    return fit, tail


def coverage_fit(table: pd.DataFrame, out_dir: Path) -> list[Figure]:
    check = coverage_tail_check(table)
    if check is None:
        return []
    fit, tail = check
    plt = pyplot()
    c = coverage_curve(table)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.fill_between(c["k"], c["lo"], c["hi"], color="black", alpha=0.12, lw=0)
    ax.plot(c["k"], c["accuracy"], "o-", color="black", ms=4, label="measured coverage (95% bootstrap interval)")
    dense = np.geomspace(1, c["k"].max(), 200)
    ax.plot(dense, fit.predict(dense), "--", color="tab:purple",
            label=f"fit on k <= {fit.fit_ks[-1]}: log cov = {fit.a:.3f} k^{fit.b:.3f}")
    ax.axvspan(c["k"].min() * 0.9, fit.fit_ks[-1] * 1.05, color="tab:purple", alpha=0.06, lw=0)
    last = tail.iloc[-1]
    ax.annotate(f"k={int(last['k'])}: predicted {last['predicted']:.3f}, measured {last['accuracy']:.3f} "
                f"[{last['lo']:.3f}, {last['hi']:.3f}]", (last["k"], last["predicted"]), xytext=(-10, -40),
                textcoords="offset points", ha="right", fontsize=7, arrowprops={"arrowstyle": "->", "lw": 0.6})
    budget_axis(ax, c["k"])
    ax.set_ylabel("coverage (pass@k, share of problems)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Coverage against k: exponentiated power law fitted on small k (shaded), extrapolated", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return [Figure("coverage_fit", "How far sampling alone goes: coverage follows an exponentiated power law in k, "
                                   "so a fit on small budgets predicts what larger budgets would reach.",
                   save_figure(fig, out_dir, "coverage_fit"))]
