"""Figures of verifier ensembles (the ``ensemble`` sweep preset, noise family ``ensemble_flip``):

- ``accuracy_vs_members``: accuracy at fixed budgets k against the number of members K, one line per correlation
  rho of the members' errors, the closed form given each problem's pool dashed, and the exact oracle (coverage at
  that k) dotted: how many members of a given quality it takes to match one oracle, and how much correlated errors
  take away.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, pyplot, save_figure

FIXED_BUDGETS = (4, 16, 64)
"""The budgets drawn, one panel each (those present in the table)."""


def accuracy_vs_members(table: pd.DataFrame, out_dir: Path, rules: tuple[str, ...] = ("argmax", "accept")) -> list[Figure]:
    """One row of panels per rule in ``rules``, one panel per fixed budget; x = members K, a line per rho (the mean
    over noise seeds, with the widest bootstrap interval of those seeds)."""
    rows = table[table["noise"] == "ensemble_flip"] if "noise" in table else table.iloc[:0]
    if rows.empty or rows["members"].nunique() < 2:
        return []
    budgets = [k for k in FIXED_BUDGETS if k in set(rows["k"])] or sorted(rows["k"].unique())[-1:]
    rules = [r for r in rules if r in set(rows["selection"])]
    plt = pyplot()
    fig, axes = plt.subplots(len(rules), len(budgets), figsize=(3.6 * len(budgets) + 1.2, 3.4 * len(rules)),
                             sharey=True, sharex=True, squeeze=False)
    rhos = sorted(rows["rho"].unique())
    colours = plt.cm.plasma(np.linspace(0.05, 0.8, len(rhos)))
    coverage = table[table["selection"] == "coverage"]
    for r, rule in enumerate(rules):
        for c, k in enumerate(budgets):
            ax = axes[r][c]
            part = rows[(rows["selection"] == rule) & (rows["k"] == k)]
            for colour, rho in zip(colours, rhos):
                line = part[part["rho"] == rho].groupby("members", as_index=False).agg(
                    accuracy=("accuracy", "mean"), lo=("accuracy_lo", "min"), hi=("accuracy_hi", "max"),
                    closed_form=("closed_form", "mean"))
                ax.errorbar(line["members"], line["accuracy"], yerr=[line["accuracy"] - line["lo"],
                            line["hi"] - line["accuracy"]], fmt="-o", ms=3, capsize=2, color=colour,
                            label=f"rho={rho:g}")
                if line["closed_form"].notna().all():
                    ax.plot(line["members"], line["closed_form"], "--", color=colour, lw=1)
            oracle = coverage[coverage["k"] == k]["accuracy"]
            if len(oracle):
                ax.axhline(float(oracle.mean()), color="black", ls=":", lw=1, label="exact oracle")
            ax.set_title(f"{rule}, k = {k}", fontsize=9)
            ax.grid(alpha=0.3)
            if r == len(rules) - 1:
                ax.set_xlabel("members K")
        axes[r][0].set_ylabel(f"accuracy of {rule}")
    axes[0][0].legend(fontsize=7, frameon=False, loc="lower right")
    first = rows.iloc[0]
    fig.suptitle(f"Ensembles of flip verifiers (each TPR {first['tpr']:g}, FPR {first['fpr']:g}) against K, "
                 f"errors correlated by rho\nmeasured solid (mean over noise seeds, 95% bootstrap); closed form given "
                 f"each pool dashed; exact oracle dotted", fontsize=9)
    fig.tight_layout()
    return [Figure("accuracy_vs_members", "How many weak verifiers make one good one: accuracy at fixed budgets as "
                                          "members are added, for independent and correlated errors.",
                   save_figure(fig, out_dir, "accuracy_vs_members"))]
