"""The settings of a sweep side by side, when nothing more specific draws them (a swept verifier field, such as
``verifier.measure`` of the confidence preset, or a plug-in's knob):

- ``settings_vs_k``: accuracy of each rule that reads the verifier (a panel each) against k, one line per setting,
  with coverage and majority vote (which read no verifier) dashed for reference.

Drawn for a sweep of one strategy, without noise, with more than two settings (one or two get
``accuracy_vs_compute``; noise sweeps get the noise figures).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, budget_axis, pyplot, save_figure
from plots.table import curve, label, select, settings

RULES = {"argmax": "best-of-k (argmax of the verifier)", "weighted": "verifier-weighted vote"}
"""The rules drawn, a panel each: the ones whose accuracy depends on the verifier."""


def settings_vs_k(table: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Accuracy against k per setting, a panel per rule in RULES."""
    sets = settings(table)
    if len(sets) <= 2 or table["strategy"].nunique() > 1 or (table["noise"] != "none").any():
        return []
    rules = [r for r in RULES if (table["selection"] == r).any()]
    if not rules:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rules), figsize=(6.0 * len(rules), 4.6), sharey=True, squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(sets)))
    first = select(table, sets.iloc[0])
    for ax, rule in zip(axes[0], rules):
        for colour, (_, setting) in zip(colours, sets.iterrows()):
            c = curve(select(table, setting)[lambda d: d["selection"] == rule])
            ax.plot(c["k"], c["accuracy"], "-o", ms=3, color=colour, label=label(setting, sets))
            ax.fill_between(c["k"], c["lo"], c["hi"], color=colour, alpha=0.12, lw=0)
        for ref, style in (("coverage", ":"), ("majority", "--")):
            c = curve(first[first["selection"] == ref])
            if len(c):
                ax.plot(c["k"], c["accuracy"], style, color="grey", lw=1, label=f"{ref} (reads no verifier)")
        budget_axis(ax, sorted(table["k"].unique()))
        ax.set_title(RULES[rule], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].set_ylim(0, 1.02)
    fig.suptitle("The sweep's settings side by side; mean over problems with 95% bootstrap interval", fontsize=9)
    fig.tight_layout()
    return [Figure("settings_vs_k", "Accuracy against the budget k for each setting of the sweep, for the rules that "
                                    "read the verifier; coverage and majority vote for reference.",
                   save_figure(fig, out_dir, "settings_vs_k"))]
