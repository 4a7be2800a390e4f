"""Figures of a collected sweep table (results.parquet): measured curves with their bands, closed forms dashed.

    python -m plots multirun/noise_flip/results.parquet --out figures/

- ``noise_vs_k``: accuracy of one selection rule against k, one colour per noise setting, the closed form dashed;
- ``reward_vs_k``: reward of the accept rule against k for each false-positive cost, the measured optimal k as a
  dot and the closed form's as a cross (drawn when the table has more than one fp_cost).
"""
from __future__ import annotations

from pathlib import Path

from plots import save_figure

NOISE_AXES = ("noise", "tpr", "fpr", "mu_right", "sigma_right", "sigma_wrong", "eps")
"""The columns that say which noise a row had."""


def _label(row, varying) -> str:
    """The noise family and the parameters that differ between the sweep's settings (the rest go in the title)."""
    import pandas as pd

    return " ".join([row["noise"]] + [f"{c}={row[c]:g}" for c in varying if pd.notna(row[c])])


def plot_table(table_path: Path, out_dir: Path, rule: str = "argmax") -> list[Path]:
    """Draw every figure the table supports; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_parquet(table_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    axes = [c for c in NOISE_AXES if c in table]
    rows = table[table["selection"] == rule]
    settings = rows[axes].drop_duplicates(ignore_index=True)
    varying = [c for c in axes[1:] if settings[c].nunique(dropna=False) > 1]
    fixed = ", ".join(f"{c}={settings[c].iloc[0]:g}" for c in axes[1:]
                      if c not in varying and pd.notna(settings[c].iloc[0]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.cm.viridis([i / max(1, len(settings) - 1) for i in range(len(settings))])
    for colour, (_, setting) in zip(colours, settings.iterrows()):
        sel = rows
        for c in axes:
            sel = sel[sel[c].isna()] if pd.isna(setting[c]) else sel[sel[c] == setting[c]]
        sel = sel.groupby("k", as_index=False)[["accuracy", "accuracy_lo", "accuracy_hi", "closed_form"]].mean()
        ax.plot(sel["k"], sel["accuracy"], "-o", ms=3, color=colour, label=_label(setting, varying))
        ax.fill_between(sel["k"], sel["accuracy_lo"], sel["accuracy_hi"], color=colour, alpha=0.12, lw=0)
        if sel["closed_form"].notna().all():
            ax.plot(sel["k"], sel["closed_form"], "--", color=colour, lw=1)
    ax.set_xscale("log", base=2)
    ks = sorted(rows["k"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("budget k (samples per problem)")
    ax.set_ylabel(f"accuracy of {rule} (share of problems)")
    ax.set_title(f"{rule} under verifier noise{' (' + fixed + ')' if fixed else ''}\n"
                 "measured: solid, 95% bootstrap band; closed form: dashed", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    written += save_figure(fig, out_dir, f"noise_vs_k_{rule}")
    plt.close(fig)

    accept = table[table["selection"] == "accept"]
    if accept["fp_cost"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        costs = sorted(accept["fp_cost"].unique())
        colours = plt.cm.plasma([i / max(1, len(costs) - 1) * 0.85 for i in range(len(costs))])
        for colour, cost in zip(colours, costs):
            sel = accept[accept["fp_cost"] == cost].groupby("k", as_index=False)[
                ["reward", "reward_lo", "reward_hi", "reward_closed_form"]].mean()
            ax.plot(sel["k"], sel["reward"], "-", color=colour, label=f"fp_cost={cost:g}")
            ax.fill_between(sel["k"], sel["reward_lo"], sel["reward_hi"], color=colour, alpha=0.12, lw=0)
            best = sel.loc[sel["reward"].idxmax()]
            ax.plot(best["k"], best["reward"], "o", color=colour, ms=7)
            if sel["reward_closed_form"].notna().all():
                ax.plot(sel["k"], sel["reward_closed_form"], "--", color=colour, lw=1)
                pred = sel.loc[sel["reward_closed_form"].idxmax()]
                ax.plot(pred["k"], pred["reward_closed_form"], "x", color=colour, ms=8, mew=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(accept["k"].unique()), [str(k) for k in sorted(accept["k"].unique())])
        ax.set_xlabel("budget k (samples per problem)")
        ax.set_ylabel("reward per problem (+1 right, -fp_cost wrong, 0 abstain)")
        ax.set_title("Reward of accept-or-abstain: optimal k measured (dot) and predicted (cross)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        written += save_figure(fig, out_dir, "reward_vs_k")
        plt.close(fig)
    return written
