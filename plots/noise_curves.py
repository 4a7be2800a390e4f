"""Figures of accuracy under verifier noise, each measured curve beside the closed form (dashed) of ESTIMATORS.md:

- ``noise_vs_k_<rule>``: accuracy against k, one colour per noise setting;
- ``accuracy_vs_noise``: accuracy against the swept noise parameter at fixed budgets;
- ``accuracy_vs_kl``: accuracy against the KL divergence of best-of-n from the policy (over-optimisation).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, budget_axis, pyplot, save_figure
from plots.table import AXIS_LABEL, fmt, curve, fixed_text, label, select, settings, varying
from search.analysis.closed_forms import best_of_n_kl

FIXED_BUDGETS = (1, 4, 16, 64)
"""The budgets drawn in ``accuracy_vs_noise`` (those present in the table)."""


def _band(rows: pd.DataFrame):
    """The simultaneous band where the table has one (noise on an exact verifier), else the pointwise interval."""
    simultaneous = "band_lo" in rows and rows["band_lo"].notna().all()
    return ("band_lo", "band_hi", "simultaneous 95% band") if simultaneous else \
        ("accuracy_lo", "accuracy_hi", "95% bootstrap interval")


def noise_vs_k(table: pd.DataFrame, out_dir: Path, rule: str = "argmax") -> list[Figure]:
    """Accuracy of ``rule`` against k for every noise setting, closed form dashed; when two noise parameters are
    swept (the flip grid), one panel per value of the second."""
    rows = table[table["selection"] == rule]
    sets = settings(rows)
    if (sets["noise"] == "none").all():
        return []
    plt = pyplot()
    vary, fixed = varying(sets), fixed_text(sets)
    facet = vary[1] if len(vary) > 1 else None
    panels = sorted(sets[facet].unique()) if facet else [None]
    lo, hi, band = _band(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.5, 4.3 * len(panels) + 2.2), 4.8), sharey=True,
                             squeeze=False)
    for ax, value in zip(axes[0], panels):
        part = sets if facet is None else sets[sets[facet] == value]
        colours = plt.cm.viridis(np.linspace(0, 0.9, len(part)))
        for colour, (_, setting) in zip(colours, part.iterrows()):
            c = curve(select(rows, setting), lo=lo, hi=hi, extra=("closed_form",))
            text = label(setting, sets) if facet is None else f"{vary[0]}={fmt(setting[vary[0]])}"
            ax.plot(c["k"], c["accuracy"], "-o", ms=3, color=colour, label=text)
            ax.fill_between(c["k"], c["lo"], c["hi"], color=colour, alpha=0.12, lw=0)
            if c["closed_form"].notna().all():
                ax.plot(c["k"], c["closed_form"], "--", color=colour, lw=1)
        budget_axis(ax, rows["k"].unique())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        if facet:
            ax.set_title(f"{AXIS_LABEL.get(facet, facet)} = {fmt(value)}", fontsize=9)
    axes[0][0].set_ylabel(f"accuracy of {rule} (share of problems)")
    axes[0][0].set_ylim(0, 1.02)
    fig.suptitle(f"{rule} under {sets['noise'].iloc[0]} verifier noise{' (' + fixed + ')' if fixed else ''}"
                 f"\nmeasured solid with {band}; closed form given each problem's pool dashed", fontsize=9)
    fig.tight_layout()
    name = f"noise_vs_k_{rule}"
    return [Figure(name, f"How the accuracy of {rule} grows with k at each noise level: false positives and "
                         f"contamination cap it below coverage, and the dashed closed forms predict where.",
                   save_figure(fig, out_dir, name))]


def accuracy_vs_noise(table: pd.DataFrame, out_dir: Path, rule: str = "argmax") -> list[Figure]:
    """Accuracy of ``rule`` against the swept noise parameter, one line per fixed budget; a second swept parameter
    (as in the flip grid's TPR) gets one panel per value."""
    rows = table[table["selection"] == rule]
    sets = settings(rows)
    vary = varying(sets)
    if not vary:
        return []
    plt = pyplot()
    x, facet = vary[0], (vary[1] if len(vary) > 1 else None)
    panels = sorted(rows[facet].dropna().unique()) if facet else [None]
    budgets = [k for k in FIXED_BUDGETS if k in set(rows["k"])] or sorted(rows["k"].unique())[:: 2]
    lo, hi, band = _band(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.5, 4.2 * len(panels) + 1), 4.6), sharey=True,
                             squeeze=False)
    colours = plt.cm.cividis(np.linspace(0, 0.85, len(budgets)))
    for ax, value in zip(axes[0], panels):
        part = rows if facet is None else rows[rows[facet] == value]
        for colour, k in zip(colours, budgets):
            c = part[part["k"] == k].groupby(x, as_index=False).agg(
                accuracy=("accuracy", "mean"), lo=(lo, "min"), hi=(hi, "max"), closed_form=("closed_form", "mean"))
            ax.errorbar(c[x], c["accuracy"], yerr=[c["accuracy"] - c["lo"], c["hi"] - c["accuracy"]], fmt="-o",
                        ms=3, capsize=2, color=colour, label=f"k={k}")
            if c["closed_form"].notna().all():
                ax.plot(c[x], c["closed_form"], "--", color=colour, lw=1)
        ax.set_xlabel(AXIS_LABEL.get(x, x))
        ax.grid(alpha=0.3)
        if facet:
            ax.set_title(f"{AXIS_LABEL.get(facet, facet)} = {fmt(value)}", fontsize=9)
    axes[0][0].set_ylabel(f"accuracy of {rule} (share of problems)")
    axes[0][0].set_ylim(0, 1.02)
    axes[0][0].legend(fontsize=7, frameon=False)
    fixed = fixed_text(sets)
    fig.suptitle(f"{rule} against verifier noise at fixed budgets: {sets['noise'].iloc[0]}"
                 f"{' (' + fixed + ')' if fixed else ''}\nmeasured with {band}, closed form dashed", fontsize=9)
    fig.tight_layout()
    return [Figure("accuracy_vs_noise", f"What a worse verifier costs at each budget: the accuracy of {rule} as "
                                        f"{AXIS_LABEL.get(x, x)} changes, with larger budgets losing more.",
                   save_figure(fig, out_dir, "accuracy_vs_noise"))]


def accuracy_vs_kl(table: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Best-of-k accuracy against KL(best-of-k || policy) = log k - (k-1)/k, one line per noise setting; drawn for
    sweeps over the spread of wrong candidates' scores (the over-optimisation regime)."""
    rows = table[table["selection"] == "argmax"]
    sets = settings(rows)
    if "sigma_wrong" not in varying(sets):
        return []
    plt = pyplot()
    lo, hi, band = _band(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.cm.magma(np.linspace(0.1, 0.8, len(sets)))
    for colour, (_, setting) in zip(colours, sets.iterrows()):
        c = curve(select(rows, setting), lo=lo, hi=hi, extra=("closed_form",))
        kl = best_of_n_kl(c["k"])
        ax.plot(kl, c["accuracy"], "-o", ms=3, color=colour, label=label(setting, sets))
        ax.fill_between(kl, c["lo"], c["hi"], color=colour, alpha=0.12, lw=0)
        if c["closed_form"].notna().all():
            ax.plot(kl, c["closed_form"], "--", color=colour, lw=1)
        peak = c["accuracy"].idxmax()
        ax.plot(kl[peak], c["accuracy"][peak], "*", color=colour, ms=10)
    top = ax.secondary_xaxis("top")
    ks = sorted(rows["k"].unique())
    top.set_xticks(best_of_n_kl(ks), [str(k) for k in ks], fontsize=7)
    top.set_xlabel("budget k", fontsize=8)
    ax.set_xlabel("KL(best-of-k || policy) = log k - (k-1)/k  [nats]")
    ax.set_ylabel("accuracy of best-of-k (share of problems)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Over-optimisation: wrong candidates' scores spread wider\n({fixed_text(sets)})\n"
                 f"measured: solid with {band}, peak starred; closed form: dashed", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return [Figure("accuracy_vs_kl", "Optimising harder against a verifier whose wrong scores spread wider first "
                                     "helps, then hurts: accuracy peaks at a moderate KL from the policy and falls.",
                   save_figure(fig, out_dir, "accuracy_vs_kl"))]
