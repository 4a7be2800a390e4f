"""Figures and report page of the train-versus-test frontier study (``search.frontier``), read from its
``grid.parquet`` (one row per rule, checkpoint and k), ``contours.csv`` and ``fits.json``:

- ``frontier``: Jones's frontier plot, a panel per rule: for each iso-accuracy target, the least test-time FLOPs per
  problem each checkpoint needs against its training FLOPs (filled: compute-efficient points, which the fit uses),
  and the fitted lines of common slope;
- ``accuracy_vs_test_flops``: a panel per rule, accuracy against test-time FLOPs per problem (k = 1..max_k), one line
  per checkpoint coloured by its training FLOPs, with 95% intervals at k = 1 and max_k.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, pyplot, save_figure

RULE_TITLE = {"coverage": "exact oracle (best-of-k = coverage)", "majority": "majority vote",
              "weighted": "learned verifier's weighted vote"}
"""Panel title of each rule."""
SIZE_MARKER = ("v", "o", "^", "s", "D")
"""Markers of the sizes, in grid order."""


def _markers(sizes) -> dict:
    return {s: SIZE_MARKER[i % len(SIZE_MARKER)] for i, s in enumerate(sizes)}


def frontier(contours: pd.DataFrame, fits: dict, sizes: list[str], out: Path) -> Figure:
    """Iso-accuracy contours in the (training FLOPs, test FLOPs) plane with the fitted trade-off, a panel per rule."""
    plt = pyplot()
    rules = list(dict.fromkeys(contours["rule"]))
    fig, axes = plt.subplots(1, len(rules), figsize=(5.2 * len(rules), 4.8), layout="constrained", squeeze=False)
    marker = _markers(sizes)
    for ax, rule in zip(axes[0], rules):
        part, fit = contours[contours.rule == rule], fits[rule]
        if not (part.status == "reached").any():
            ax.text(0.5, 0.5, "no checkpoint reached a target\nwithin the measured k", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_title(RULE_TITLE.get(rule, rule), fontsize=8.5)
            continue
        targets = sorted(part.target.unique())
        intercept = {float(t): v for t, v in fit.get("intercepts", {}).items()}      # JSON keys are strings
        colours = plt.cm.plasma(np.linspace(0.1, 0.85, len(targets)))
        for target, colour in zip(targets, colours):
            rows = part[(part.target == target) & (part.status == "reached")]
            for size in sizes:
                r = rows[rows["size"] == size]
                ax.scatter(r.train_flops, r.test_flops, marker=marker[size], s=28,
                           facecolors=[colour if p else "none" for p in r.pareto], edgecolors=[colour] * len(r))
            if fit.get("slope") is not None and float(target) in intercept:
                eff = rows[rows.pareto]
                x = np.log10(np.array([eff.train_flops.min(), eff.train_flops.max()]))
                ax.plot(10 ** x, 10 ** (intercept[float(target)] + fit["slope"] * x), color=colour, lw=1.2)
            ax.plot([], [], color=colour, marker="o", ls="-", label=f"accuracy {target:g}")
        for size in sizes:
            ax.scatter([], [], marker=marker[size], facecolors="none", edgecolors="black", label=size)
        ax.set(xscale="log", yscale="log", xlabel="training compute (FLOPs)",
               ylabel="test-time compute per problem (FLOPs) to reach the accuracy")
        if fit.get("slope") is not None:
            ci = (f" [{fit['multiple_ci_low']:.2g}, {fit['multiple_ci_high']:.2g}]"
                  if "multiple_ci_low" in fit else "")
            title = (f"{RULE_TITLE.get(rule, rule)}\nslope {fit['slope']:.2f}: one doubling of training = "
                     f"{fit['multiple_per_doubling']:.2g}x{ci} test compute")
        else:
            title = f"{RULE_TITLE.get(rule, rule)}\n(too few contour points for a fit)"
        ax.set_title(title, fontsize=8.5)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, frameon=False)
    fig.suptitle("Train-versus-test compute frontier (filled: compute-efficient checkpoints, which the fit uses)",
                 fontsize=9)
    return Figure("frontier", "Iso-accuracy contours: the least test-time compute per problem each checkpoint needs "
                  "to reach an accuracy, against its training compute; lines are the fitted trade-off (one slope "
                  "for every target).", save_figure(fig, out, "frontier"))


def accuracy_vs_test_flops(table: pd.DataFrame, sizes: list[str], out: Path) -> Figure:
    """Accuracy against test-time FLOPs per problem, a line per checkpoint coloured by training FLOPs."""
    plt = pyplot()
    rules = list(dict.fromkeys(table["rule"]))
    fig, axes = plt.subplots(1, len(rules), figsize=(5.2 * len(rules), 4.6), layout="constrained", squeeze=False,
                             sharey=True)
    lo, hi = np.log10(table.train_flops.min()), np.log10(table.train_flops.max())
    cmap = plt.cm.viridis
    styles = {s: ("-", "--", ":", "-.")[i % 4] for i, s in enumerate(sizes)}
    for ax, rule in zip(axes[0], rules):
        part = table[table.rule == rule]
        for name, rows in part.groupby("checkpoint", sort=False):
            rows = rows.sort_values("k")
            colour = cmap((np.log10(rows.train_flops.iloc[0]) - lo) / max(hi - lo, 1e-9))
            ax.plot(rows.test_flops, rows.accuracy, color=colour, ls=styles[rows["size"].iloc[0]], lw=1.1)
            ends = rows.iloc[[0, -1]]
            ax.errorbar(ends.test_flops, ends.accuracy, fmt="none", ecolor=colour, capsize=2, lw=0.8,
                        yerr=[ends.accuracy - ends.ci_low, ends.ci_high - ends.accuracy])
        for size in sizes:
            ax.plot([], [], color="grey", ls=styles[size], label=size)
        ax.set(xscale="log", xlabel="test-time compute per problem (FLOPs; k = 1 .. max k)", ylim=(0, 1.02))
        ax.set_title(RULE_TITLE.get(rule, rule), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    axes[0][0].set_ylabel("accuracy")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    fig.colorbar(sm, ax=axes[0].tolist(), label="log10 training FLOPs", shrink=0.8)
    return Figure("accuracy_vs_test_flops", "Each checkpoint's accuracy against the test-time compute it spends (k "
                  "samples), coloured by its training compute: more training shifts the curve up and left.",
                  save_figure(fig, out, "accuracy_vs_test_flops"))


def write_report(out: Path, grid: dict, checkpoints: pd.DataFrame, table: pd.DataFrame, contours: pd.DataFrame,
                 fits: dict) -> Path:
    """The figures, report.md and report.html of a frontier study directory; returns report.md's path."""
    from plots.report import render_html, render_markdown

    sizes = list(grid["sizes"])
    figures = [frontier(contours, fits, sizes, out), accuracy_vs_test_flops(table, sizes, out)]
    fit_rows = pd.DataFrame([{"rule": rule, "slope": f.get("slope"), "slope_ci_low": f.get("slope_ci_low"),
                              "slope_ci_high": f.get("slope_ci_high"),
                              "test_multiple_per_train_doubling": f.get("multiple_per_doubling"),
                              "multiple_ci_low": f.get("multiple_ci_low"),
                              "multiple_ci_high": f.get("multiple_ci_high"),
                              "points": f.get("n_points"), "targets": f.get("n_targets"),
                              "resamples_used": f.get("resamples_used")} for rule, f in fits.items()])
    shown = checkpoints.drop(columns=[c for c in ("train_minutes",) if c in checkpoints])
    blocks = [
        ("h1", f"Train-versus-test compute frontier: {out.name}"),
        ("p", f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by `python -m search.frontier`. Sizes: "
              f"{json.dumps(grid['sizes'])}; training: {json.dumps(grid['training'])}, kept at steps "
              f"{grid['save_at']}; best-of-k to k = {grid['max_k']} on one pool per problem"
              f"{' with the verifier ' + str(grid['verifier']) if grid.get('verifier') else ''}. Training FLOPs are "
              f"6 x parameters x training tokens; test-time FLOPs per problem are 2 x parameters x (prompt + k x mean "
              f"completion tokens), plus the verifier's 2 x parameters x tokens for the weighted vote."),
        ("p", "The trade-off is the slope of log test-time FLOPs on log training FLOPs along the iso-accuracy "
              "contours' compute-efficient points (one slope, an intercept per target); the multiple is how many "
              "times more test-time compute replaces one doubling of training compute (2^-slope). Intervals: 95% "
              "percentile bootstrap over problems."),
        ("table", fit_rows),
        ("h2", "Figures"), *[("figure", f) for f in figures],
        ("h2", "Every checkpoint"),
        ("p", f"Accuracy at k = 1 (pass@1) and at k = {grid['max_k']} per rule; test FLOPs at k = {grid['max_k']} "
              f"are the policy's."),
        ("table", shown),
        ("h2", "Contours"),
        ("p", "Per rule, target and checkpoint: the least test-time FLOPs reaching the target (status: reached; "
              "at_first: already at k = 1, an upper bound, not used in the fit; never: not by max k)."),
        ("table", contours[["rule", "target", "checkpoint", "train_flops", "test_flops", "status", "pareto"]]),
    ]
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(blocks))
    page.write_text(render_html(blocks, f"Train-versus-test frontier: {out.name}"))
    return md
