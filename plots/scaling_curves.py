"""Figures and report page of the verifier scaling study (``search.verifier_scaling``), read from its ``cells.csv``
(one row per trained verifier) and ``results.parquet`` (one row per cell, rule and k):

- ``best_vs_training_flops``: best-of-max_k accuracy against the verifier's training FLOPs, a line per family and
  size, with the exact oracle's coverage as ceiling and majority vote as floor;
- ``accuracy_vs_k``: accuracy against k for each verifier size (and, beside it, each label amount): the shape of
  Gao et al.'s over-optimisation curves;
- ``within_auroc_vs_labels``: within-problem AUROC against labelled solutions, a line per family and size.

Every point is a mean over evaluation problems with its 95% bootstrap interval.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, budget_axis, pyplot, save_figure

FAMILY_STYLE = {"exact": ("PRM, exact step labels", "tab:blue"), "mc": ("PRM, Monte-Carlo labels", "tab:purple"),
                "outcome": ("ORM, outcome labels", "tab:green"), "pairwise": ("ORM, pairwise ranking", "tab:red")}
"""Label and colour of each verifier family."""
SIZE_MARKER = {"small": "v", "policy": "o", "large": "^", "fresh": "s"}
"""Marker of each size name (others: 'D')."""


def _lines(cells: pd.DataFrame):
    """(label, colour, marker, rows sorted by amount) for each family at each size."""
    for (family, size), rows in cells.groupby(["family", "size"], sort=False):
        text, colour = FAMILY_STYLE.get(family, (family, "grey"))
        params = rows["n_params"].iloc[0] / 1e6
        yield (f"{text}, {size} ({params:.2f}M)", colour, SIZE_MARKER.get(size, "D"),
               rows.sort_values("train_solutions"))


def _baseline(results: pd.DataFrame, rule: str, k: int | None = None) -> pd.DataFrame | pd.Series:
    rows = results[(results.cell == "baseline") & (results.rule == rule)].sort_values("k")
    return rows if k is None else rows[rows.k == k].iloc[0]


def best_vs_training_flops(cells: pd.DataFrame, results: pd.DataFrame, max_k: int, out: Path) -> Figure:
    """Two panels against training FLOPs: best-of-max_k (argmax of the scores) and the verifier-weighted vote at
    max_k, each with the exact oracle, majority vote and one sample as reference lines."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.0), sharey=True, layout="constrained")
    for ax, key, what in ((axes[0], "best_of_max_k", f"best-of-{max_k} (the top-scored candidate)"),
                          (axes[1], "weighted_max_k", f"weighted vote @{max_k} (answers weighted by summed scores)")):
        if key not in cells:
            continue
        for label, colour, marker, rows in _lines(cells):
            y = rows[key].to_numpy()
            err = np.vstack([y - rows[f"{key}_ci_low"].to_numpy(), rows[f"{key}_ci_high"].to_numpy() - y])
            ax.errorbar(rows["training_flops"], y, yerr=err, marker=marker, color=colour, ms=5, capsize=2, lw=1.2,
                        label=label, alpha=1.0 if "policy" in label else 0.6)
        for rule, text in (("coverage", "exact oracle (coverage)"), ("majority", "majority vote")):
            row = _baseline(results, rule, max_k)
            ax.axhline(row.accuracy, ls="--", color="black" if rule == "coverage" else "tab:orange", lw=1,
                       label=f"{text} @{max_k}: {row.accuracy:.3f}")
        one = _baseline(results, "coverage", 1)
        ax.axhline(one.accuracy, ls=":", color="grey", lw=1, label=f"one sample (pass@1): {one.accuracy:.3f}")
        ax.set_xscale("log")
        ax.set(xlabel="verifier training compute (FLOPs, 6 x parameters x tokens)", ylim=(0, 1.02))
        ax.set_title(what, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"accuracy at k = {max_k}")
    axes[0].legend(fontsize=6.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=2)
    fig.suptitle("Each trained verifier against its training compute (points: label amounts; 95% intervals)",
                 fontsize=9)
    return Figure("best_vs_training_flops", f"What training a verifier buys: best-of-{max_k} and the weighted vote "
                  f"at k = {max_k} against the verifier's training FLOPs, between majority vote and the exact "
                  f"oracle.", save_figure(fig, out, "best_vs_training_flops"))


def accuracy_vs_k(cells: pd.DataFrame, results: pd.DataFrame, out: Path) -> Figure:
    """Left: the exact-label PRM at each size on its largest label amount. Right: at the policy's size, each
    amount. Both with majority vote, coverage and the matched flip noise's prediction for the largest model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True, layout="constrained")
    family = "exact" if (cells.family == "exact").any() else cells.family.iloc[0]
    rows = cells[cells.family == family]
    biggest = rows.sort_values("train_solutions").groupby("size", sort=False).tail(1)
    panels = ((axes[0], biggest.sort_values("n_params"), lambda r: f"{r['size']} ({r['n_params'] / 1e6:.2f}M)",
               f"{FAMILY_STYLE.get(family, (family,))[0]}: by verifier size"),
              (axes[1], rows[rows["size"] == ("policy" if (rows["size"] == "policy").any() else rows["size"].iloc[0])]
               .sort_values("train_solutions"), lambda r: f"{int(r['train_solutions'])} solutions",
               f"{FAMILY_STYLE.get(family, (family,))[0]}: by labelled solutions"))
    ks = sorted(results.k.unique())
    for ax, part, name, title in panels:
        colours = plt.cm.viridis(np.linspace(0, 0.85, max(1, len(part))))
        for colour, (_, r) in zip(colours, part.iterrows()):
            line = results[(results.cell == r["cell"]) & (results.rule == "argmax")].sort_values("k")
            ax.plot(line.k, line.accuracy, color=colour, lw=1.5,
                    label=f"{name(r)}: peak {r['peak_accuracy']:.3f} at k={int(r['peak_k'])}")
            ax.fill_between(line.k, line.ci_low, line.ci_high, color=colour, alpha=0.15, lw=0)
        for rule, colour in (("coverage", "black"), ("majority", "tab:orange")):
            base = _baseline(results, rule)
            ax.plot(base.k, base.accuracy, "--", color=colour, lw=1, label=rule if rule == "majority"
                    else "exact oracle (coverage)")
        if len(part):
            top = part.iloc[-1]
            flip = results[(results.cell == top["cell"]) & (results.rule == "matched_flip")].sort_values("k")
            if len(flip):
                ax.plot(flip.k, flip.accuracy, ":", color="grey", lw=1.2,
                        label=f"matched flip noise of {name(top)} (TPR {top['tpr']:.2f}, FPR {top['fpr']:.2f})")
        budget_axis(ax, [k for k in ks if k & (k - 1) == 0])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, frameon=False, loc="lower left")
    axes[0].set(ylabel="best-of-k accuracy", ylim=(0, 1.02))
    return Figure("accuracy_vs_k", "Best-of-k against k with each verifier (Gao et al.'s shape: a learned verifier's "
                  "curve rises, peaks and falls as k grows; a better verifier peaks later and higher).",
                  save_figure(fig, out, "accuracy_vs_k"))


def within_auroc_vs_labels(cells: pd.DataFrame, out: Path) -> Figure:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6), layout="constrained")
    for label, colour, marker, rows in _lines(cells):
        y = rows["within_auroc"].to_numpy(dtype=float)
        err = np.vstack([y - rows["within_ci_low"].to_numpy(dtype=float),
                         rows["within_ci_high"].to_numpy(dtype=float) - y])
        ax.errorbar(rows["train_solutions"], y, yerr=err, marker=marker, color=colour, ms=5, capsize=2, lw=1.2,
                    label=label, alpha=1.0 if "policy" in label else 0.6)
    ax.axhline(0.5, ls=":", color="grey", lw=1, label="chance")
    ax.axhline(0.8, ls="--", color="black", lw=0.8, label="0.80 (the shipping bar)")
    ax.set_ylim(min(0.4, ax.get_ylim()[0]), 0.9)
    ax.set_xscale("log")
    ax.set(xlabel="labelled training solutions", ylabel="within-problem AUROC on the evaluation pools")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, frameon=False, loc="upper left", ncol=2)
    ax.set_title("How well each verifier ranks one problem's candidates, against its labels (95% intervals)",
                 fontsize=8.5)
    return Figure("within_auroc_vs_labels", "Within-problem AUROC (the ranking best-of-k reads) against the amount "
                  "of labelled solutions, per family and size.", save_figure(fig, out, "within_auroc_vs_labels"))


CELL_COLUMNS = {"cell": "cell", "n_params": "params", "train_solutions": "solutions", "steps_done": "steps",
                "training_flops": "train FLOPs", "train_minutes": "min", "auroc": "AUROC", "within_auroc": "within",
                "within_ci_low": "within lo", "within_ci_high": "within hi", "step_auroc": "step AUROC",
                "ece": "ECE", "tpr": "TPR", "fpr": "FPR", "best_of_max_k": "best-of-max", "best_of_max_k_ci_low": "lo",
                "best_of_max_k_ci_high": "hi", "weighted_max_k": "weighted vote",
                "weighted_minus_majority_ci_low": "vote - majority lo", "weighted_minus_majority_ci_high": "hi ",
                "peak_k": "peak k",
                "peak_accuracy": "at peak",
                "matched_flip_best_of_max_k": "matched flip", "matched_scores_best_of_max_k": "matched scores"}
"""The report's cell table: column -> heading."""
GAP_COLUMNS = {"cell": "cell", "n_params": "params", "tokens": "training tokens",
               "policy_step_accuracy": "policy writes a step right", "verifier_step_accuracy": "verifier judges it",
               "verifier_step_balanced_accuracy": "balanced", "verifier_step_auroc": "step AUROC",
               "policy_solution_accuracy": "policy's solution right", "verifier_solution_accuracy":
               "verifier judges it ", "verifier_solution_balanced_accuracy": "balanced ",
               "verifier_solution_auroc": "AUROC"}
"""The report's generation-verification table."""


def write_report(out: Path, cells: pd.DataFrame, results: pd.DataFrame, grid: dict, policy: dict) -> Path:
    """The figures, report.md and report.html of a study directory; returns report.md's path. ``policy``: the
    policy's training record (its ``n_params`` and ``tokens``), for the generation-verification gap."""
    from plots.report import render_html, render_markdown

    max_k = int(grid["max_k"])
    figures = [best_vs_training_flops(cells, results, max_k, out), accuracy_vs_k(cells, results, out),
               within_auroc_vs_labels(cells, out)]
    cov, maj = _baseline(results, "coverage", max_k), _baseline(results, "majority", max_k)
    one = _baseline(results, "coverage", 1)
    table = cells[[c for c in CELL_COLUMNS if c in cells]].rename(columns=CELL_COLUMNS)
    gap = cells[[c for c in GAP_COLUMNS if c in cells]].rename(columns=GAP_COLUMNS)
    best = cells.sort_values("best_of_max_k").iloc[-1]
    blocks = [
        ("h1", f"Verifier scaling study: {out.name}"),
        ("p", f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by `python -m search.verifier_scaling` "
              f"({len(cells)} trained verifiers). Labels: {json.dumps(grid['labels'])}; training: "
              f"{json.dumps(grid['training'])}. Every accuracy is a mean over the evaluation problems with its 95% "
              f"bootstrap interval; best-of-k is exact at every k from one pool of {max_k} per problem."),
        ("p", f"Without a learned verifier: one sample {one.accuracy:.3f}, majority vote @{max_k} {maj.accuracy:.3f} "
              f"[{maj.ci_low:.3f}, {maj.ci_high:.3f}], exact oracle @{max_k} {cov.accuracy:.3f}. The best trained "
              f"verifier here ({best['cell']}): best-of-{max_k} {best['best_of_max_k']:.3f} "
              f"[{best['best_of_max_k_ci_low']:.3f}, {best['best_of_max_k_ci_high']:.3f}], within-problem AUROC "
              f"{best['within_auroc']:.3f}; the shipping bar is majority + 0.10 = {maj.accuracy + 0.10:.3f} and "
              f"within-problem AUROC 0.80."),
        ("h2", "Figures"), *[("figure", f) for f in figures],
        ("h2", "Every trained verifier"),
        ("p", "AUROC is pooled over the evaluation candidates, within is per problem (with its interval), step AUROC "
              "is every step's score against the exact prefix label; TPR/FPR at threshold 0.5; best-of-max is "
              f"best-of-{max_k} with its interval; weighted vote: answers weighted by the sum of their scores, at "
              f"k = {max_k}, with the 95% interval of its paired difference from majority vote over problems; matched flip / scores: what the flip noise of the same TPR/FPR and "
              f"the Gaussian score noise of the same within-problem logits predict for best-of-{max_k}."),
        ("table", table),
        ("h2", "The generation-verification gap"),
        ("p", f"On the same evaluation pools: how often the policy writes a step right from a right prefix (and a "
              f"solution right) against how often each verifier judges it correctly at threshold 0.5 (accepting everything scores the policy's "
              f"own accuracy, so its balanced accuracy, 0.5 for any constant verdict, and AUROC on the same items "
              f"stand beside it; outcome-trained cells have no step verdicts). "
              f"The policy has {policy['n_params']:,} parameters and was trained on {policy['tokens']:,} tokens."),
        ("table", gap),
    ]
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(blocks))
    page.write_text(render_html(blocks, f"Verifier scaling study: {out.name}"))
    return md

