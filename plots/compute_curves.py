"""Accuracy against compute: one line per selection rule, against FLOPs and against tokens per problem (log axes)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from plots import RULE_STYLE, Figure, pyplot, save_figure
from plots.table import NOISE_AXES, curve, fmt, select, settings


def _describe(setting: pd.Series) -> str:
    """The verifier and its whole noise setting, for a title."""
    swept = "".join(f", {c}={fmt(setting[c])}" for c in setting.index if "." in c and pd.notna(setting[c]))
    if setting["noise"] == "none":
        return f"verifier {setting['verifier']}{swept}, no noise"
    params = ", ".join(f"{c}={setting[c]:g}" for c in NOISE_AXES[1:] if c in setting and pd.notna(setting[c]))
    return f"verifier {setting['verifier']}{swept}, {setting['noise']} noise ({params})"


def accuracy_vs_compute(table: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Accuracy of every rule against the FLOPs and the tokens that k samples cost per problem, averaged over pool
    seeds: one figure per setting, drawn for tables of one or two settings (a compute sweep; noise sweeps show
    their settings side by side in the noise figures instead)."""
    sets = settings(table)
    if len(sets) > 2:
        return []
    plt = pyplot()
    figures = []
    for i, (_, setting) in enumerate(sets.iterrows()):
        rows = select(table, setting)
        seeds = rows["pool_seed"].nunique() if "pool_seed" in rows else 1
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
        for ax, x, xlabel in ((axes[0], "flops", "FLOPs per problem (policy + verifier, cache-less)"),
                              (axes[1], "tokens", "tokens per problem (policy prompt + completions + verifier)")):
            for rule, (rule_label, colour, style) in RULE_STYLE.items():
                part = rows[rows["selection"] == rule].assign(tokens=lambda d: d["policy_tokens"] + d["verifier_tokens"])
                if part.empty:
                    continue
                c = curve(part, extra=(x,))
                ax.plot(c[x], c["accuracy"], style, color=colour, marker="o", ms=3, label=rule_label)
                ax.fill_between(c[x], c["lo"], c["hi"], color=colour, alpha=0.12, lw=0)
                if rule == "coverage":      # mark the budgets along the top curve
                    for _, r in c.iterrows():
                        ax.annotate(f"{int(r['k'])}", (r[x], r["accuracy"]), fontsize=6, color="grey",
                                    xytext=(-3, 5), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("accuracy (share of problems solved)")
        axes[0].set_ylim(0, 1.02)
        axes[0].legend(loc="lower right", fontsize=7, frameon=False)
        first = rows.iloc[0]
        fig.suptitle(f"Accuracy against compute: {first['task']}, {int(first['n_problems'])} problems, policy "
                     f"{first['policy']}, {_describe(setting)}\n"
                     f"mean over {seeds} pool seed(s); bands: 95% bootstrap over problems (envelope over seeds)",
                     fontsize=9)
        fig.tight_layout()
        name = "accuracy_vs_compute" + (f"_{i}" if len(sets) > 1 else "")
        figures.append(Figure(name, "How accuracy grows with the compute spent per problem for each selection rule; "
                              "the gap between coverage and a rule is what a better verifier or vote could still win.",
                              save_figure(fig, out_dir, name)))
    return figures
