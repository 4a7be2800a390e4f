"""Figures of the compute split between policy samples k and verifier samples K (the ``judge_split`` preset):

- ``accuracy_vs_split``: best-of-k accuracy against total FLOPs per problem (policy plus verifier), one line per
  number of sampled verdicts K, every point labelled with its k; at any fixed total compute, the highest line is
  the best split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, pyplot, save_figure

SAMPLES_COLUMN = "verifier.samples"
"""The swept number of verdicts per candidate, as the collector names it."""


def accuracy_vs_split(table: pd.DataFrame, out_dir: Path, rule: str = "argmax") -> list[Figure]:
    """Accuracy of ``rule`` against FLOPs per problem, a line per K (mean over jobs with the same K)."""
    if SAMPLES_COLUMN not in table or table[SAMPLES_COLUMN].nunique() < 2:
        return []
    rows = table[table["selection"] == rule]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    values = sorted(rows[SAMPLES_COLUMN].dropna().unique())
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(values)))
    for colour, K in zip(colours, values):
        line = rows[rows[SAMPLES_COLUMN] == K].groupby("k", as_index=False).agg(
            accuracy=("accuracy", "mean"), lo=("accuracy_lo", "min"), hi=("accuracy_hi", "max"), flops=("flops", "mean"))
        ax.plot(line["flops"], line["accuracy"], "-o", ms=3, color=colour, label=f"K = {int(K)} verdicts")
        ax.fill_between(line["flops"], line["lo"], line["hi"], color=colour, alpha=0.12, lw=0)
        for _, point in line.iterrows():
            ax.annotate(f"{int(point['k'])}", (point["flops"], point["accuracy"]), fontsize=6, color=colour,
                        xytext=(2, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per problem: policy (k samples) + verifier (k candidates x K verdicts)")
    ax.set_ylabel(f"accuracy of {rule}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Splitting compute between policy samples k (point labels) and sampled verdicts K\n"
                 "mean over problems with 95% bootstrap interval", fontsize=9)
    fig.tight_layout()
    return [Figure("accuracy_vs_split", "Where a fixed compute budget is best spent: on more policy samples or on "
                                        "more verdicts per candidate.", save_figure(fig, out_dir, "accuracy_vs_split"))]
