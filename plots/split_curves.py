"""Figures of the compute split between policy samples k and verifier samples K (the ``judge_split`` preset):

- ``accuracy_vs_split``: best-of-k and weighted-vote accuracy (a panel each) against total FLOPs per problem
  (policy plus verifier), one line per number of sampled verdicts K, every point labelled with its k, majority
  vote dashed; at any fixed total compute, the highest line is the best split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, pyplot, save_figure
from plots.table import curve

SAMPLES_COLUMN = "verifier.samples"
"""The swept number of verdicts per candidate, as the collector names it."""


def accuracy_vs_split(table: pd.DataFrame, out_dir: Path, rules: tuple[str, ...] = ("argmax", "weighted"))\
        -> list[Figure]:
    """Accuracy of each of ``rules`` (a panel each) against FLOPs per problem, a line per K (mean over jobs with the
    same K), with majority vote over the policy's samples dashed for reference (it reads no verdict)."""
    if SAMPLES_COLUMN not in table or table[SAMPLES_COLUMN].nunique() < 2:
        return []
    plt = pyplot()
    rules = tuple(r for r in rules if (table["selection"] == r).any())
    if not rules:
        return []
    fig, axes = plt.subplots(1, len(rules), figsize=(6.2 * len(rules), 4.8), sharey=True, squeeze=False)
    values = sorted(table[SAMPLES_COLUMN].dropna().unique())
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(values)))
    majority = curve(table[(table["selection"] == "majority") & (table[SAMPLES_COLUMN] == values[0])],
                     extra=("flops", "flops_policy"))
    for ax, rule in zip(axes[0], rules):
        rows = table[table["selection"] == rule]
        for colour, K in zip(colours, values):
            line = curve(rows[rows[SAMPLES_COLUMN] == K], extra=("flops",))
            ax.plot(line["flops"], line["accuracy"], "-o", ms=3, color=colour, label=f"K = {int(K)} verdicts")
            ax.fill_between(line["flops"], line["lo"], line["hi"], color=colour, alpha=0.12, lw=0)
            for _, point in line.iterrows():
                ax.annotate(f"{int(point['k'])}", (point["flops"], point["accuracy"]), fontsize=6, color=colour,
                            xytext=(2, 3), textcoords="offset points")
        if len(majority) and "flops_policy" in majority:     # a table collected before the column: no line
            ax.plot(majority["flops_policy"], majority["accuracy"], "--", color="grey", lw=1,
                    label="majority vote (reads no verdict: the policy's compute only)")
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs per problem: policy (k samples) + verifier (k candidates x K verdicts)")
        ax.set_title({"argmax": "best-of-k: the top verdict share", "weighted": "weighted vote: answers weighted "
                      "by their verdict shares"}.get(rule, rule), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].set_ylim(0, 1.02)
    fig.suptitle("Splitting compute between policy samples k (point labels) and sampled verdicts K; "
                 "mean over problems with 95% bootstrap interval", fontsize=9)
    fig.tight_layout()
    return [Figure("accuracy_vs_split", "Where a fixed compute budget is best spent: on more policy samples or on "
                                        "more verdicts per candidate, for each rule that reads the verdicts.",
                   save_figure(fig, out_dir, "accuracy_vs_split"))]

