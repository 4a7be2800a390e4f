"""Strategies compared at equal compute: accuracy against FLOPs per problem, one line per strategy, one panel per
verifier-noise setting; and the same per difficulty bin (which strategy wins on easy and on hard problems).

Best-of-k is drawn from its pools at every k (its argmax, and majority vote dashed as the no-verifier baseline);
each step-wise strategy has one point per budget, its own answers' accuracy.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from plots import Figure, pyplot, save_figure
from plots.table import curve, label, select, settings

STYLE = {
    "best_of_k": ("best-of-k (argmax)", "tab:blue", "o"),
    "beam_search": ("beam search", "tab:red", "s"),
    "dvts": ("diverse tree search (DVTS)", "tab:green", "^"),
    "mcts": ("MCTS", "tab:purple", "D"),
    "particle_filtering": ("particle filtering", "tab:orange", "v"),
}
"""Label, colour and marker of each strategy."""


def _strategy_points(rows: pd.DataFrame, strategy: str, selection: str = "argmax") -> pd.DataFrame:
    part = rows[(rows["strategy"] == strategy) & (rows["selection"] == selection)]
    return curve(part, extra=("flops",))


def _panel(ax, rows: pd.DataFrame) -> None:
    for strategy, (text, colour, marker) in STYLE.items():
        c = _strategy_points(rows, strategy)
        if c.empty:
            continue
        ax.plot(c["flops"], c["accuracy"], "-", marker=marker, ms=4, color=colour, label=text)
        ax.fill_between(c["flops"], c["lo"], c["hi"], color=colour, alpha=0.1, lw=0)
        if strategy == "best_of_k":
            m = _strategy_points(rows, strategy, "majority")
            ax.plot(m["flops"], m["accuracy"], "--", color="grey", lw=1, label="majority vote (no verifier)")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())     # minor labels (2x10^8, 3x10^8, ...) collide in small panels
    ax.grid(alpha=0.3, which="both")


def _grid(table: pd.DataFrame):
    table = table[table["strategy"].isin(STYLE)]
    if table["strategy"].nunique() < 2:
        return None, None
    return table, settings(table)


def strategies_vs_compute(table: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Drawn when the table holds more than one strategy."""
    table, sets = _grid(table)
    if table is None:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets) + 1.5, 4.6), sharey=True, squeeze=False)
    for ax, (_, setting) in zip(axes[0], sets.iterrows()):
        _panel(ax, select(table, setting))
        ax.set_title(label(setting, sets) if len(sets) > 1 else f"{setting['verifier']}, {label(setting, sets)}",
                     fontsize=9)
        ax.set_xlabel("FLOPs per problem (policy + verifier, cache-less)")
    axes[0][0].set_ylabel("accuracy (share of problems)")
    axes[0][0].set_ylim(0, 1.02)
    axes[0][-1].legend(fontsize=7, frameon=False, loc="lower right")
    first = table.iloc[0]
    fig.suptitle(f"Search strategies at equal compute: {first['task']}, {int(first['n_problems'])} problems, policy "
                 f"{first['policy']}, verifier {first['verifier']}\nstep-wise: one point per budget; best-of-k: "
                 f"every k of its pools; bands: 95% bootstrap over problems", fontsize=9)
    fig.tight_layout()
    return [Figure("strategies_vs_compute", "Which search strategy buys the most accuracy per FLOP, with the exact "
                                            "verifier and as step-level verifier noise grows.",
                   save_figure(fig, out_dir, "strategies_vs_compute"))]


def strategies_by_difficulty(bins: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """One row of panels per noise setting, one column per difficulty bin."""
    bins, sets = _grid(bins)
    if bins is None:
        return []
    plt = pyplot()
    values = sorted(bins["difficulty"].dropna().unique())
    key = bins["difficulty_key"].dropna().iloc[0]
    fig, axes = plt.subplots(len(sets), len(values), figsize=(3.1 * len(values) + 1, 2.9 * len(sets) + 1),
                             sharey=True, squeeze=False)
    for r, (_, setting) in enumerate(sets.iterrows()):
        rows = select(bins, setting)
        for c, value in enumerate(values):
            ax = axes[r][c]
            part = rows[rows["difficulty"] == value]
            _panel(ax, part)
            n = int(part["n_problems"].max()) if not part.empty else 0
            ax.set_title(f"{key}={value:g} ({n} problems)" + (f"\n{label(setting, sets)}" if len(sets) > 1 else ""),
                         fontsize=8)
            if r == len(sets) - 1:
                ax.set_xlabel("FLOPs per problem (cache-less)", fontsize=8)
        axes[r][0].set_ylabel("accuracy")
    axes[0][0].set_ylim(0, 1.02)
    axes[0][-1].legend(fontsize=6, frameon=False, loc="lower right")
    fig.suptitle(f"Search strategies by difficulty ({key}): accuracy against FLOPs per problem; bands: 95% "
                 f"bootstrap over the bin's problems", fontsize=9)
    fig.tight_layout()
    return [Figure("strategies_by_difficulty", "Where each strategy wins: on easy problems every strategy "
                                               "saturates, the differences live in the hard bins.",
                   save_figure(fig, out_dir, "strategies_by_difficulty"))]
