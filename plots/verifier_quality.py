"""How good is a verifier, measured against the exact oracles (``search.engine.measuring``): its ROC curves at the outcome
and step levels with the operating point marked, and its reliability diagram.

Read only from the measured rows (``verifier_scores.parquet``) and numbers (``verifier_quality.json``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from plots import Figure, pyplot, save_figure

LEVEL_STYLE = {"outcome": ("outcome (final answer)", "tab:blue"), "step": ("step (prefix correct)", "tab:red")}
"""Label and colour of each level."""


def quality_figures(table, quality: dict, out_dir: Path) -> list[Figure]:
    """``roc.png`` and ``calibration.png`` (with SVGs) of one measurement, into ``out_dir``."""
    return [roc_figure(table, quality, out_dir / "roc"), calibration_figure(table, quality, out_dir / "calibration")]


def roc_figure(table, quality: dict, stem: Path) -> Figure:
    """ROC curve per level, AUROC in the legend, the operating threshold's (FPR, TPR) as a dot."""
    from search.analysis.verifier_metrics import roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    for level, (text, colour) in LEVEL_STYLE.items():
        part = table[table.level == level]
        q = quality["levels"].get(level)
        if part.empty or q is None or q["auroc"] is None:
            continue
        fpr, tpr, _ = roc_curve(part.score, part.label)
        ax.plot(fpr, tpr, color=colour, label=f"{text}: AUROC {q['auroc']:.3f}")
        ax.plot([q["fpr"]], [q["tpr"]], "o", color=colour, ms=7, mec="black",
                label=f"threshold {quality['threshold']:g}: TPR {q['tpr']:.2f}, FPR {q['fpr']:.2f}")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (wrong accepted)",
           ylabel="true-positive rate (right accepted)",
           title=f"{quality['verifier']} against the exact oracle\n{quality['n_problems']} problems x "
                 f"{quality['samples']} samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return Figure(stem.name, "ROC of the verifier against the exact labels; the dot is the operating threshold, whose "
                         "(FPR, TPR) is the matched flip noise.", save_figure(fig, stem.parent, stem.name))


def calibration_figure(table, quality: dict, stem: Path) -> Figure:
    """Reliability diagram per level (share of positives against mean score per bin), with bin counts below."""
    plt = pyplot()
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.2, 5.6), height_ratios=(3, 1), sharex=True,
                                  layout="constrained")
    width = 0.1
    for shift, (level, (text, colour)) in zip((-0.02, 0.02), LEVEL_STYLE.items()):
        q = quality["levels"].get(level)
        if q is None:
            continue
        bins = [b for b in q["reliability"] if b["n"]]
        ax.plot([b["mean_score"] for b in bins], [b["positive_rate"] for b in bins], "o-", color=colour,
                label=f"{text}: ECE {q['ece']:.3f}, Brier {q['brier']:.3f}")
        centres = np.array([(b["lo"] + b["hi"]) / 2 for b in q["reliability"]])
        axn.bar(centres + shift, [b["n"] for b in q["reliability"]], width=width * 0.4, color=colour, alpha=0.7)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="share actually right",
           title=f"{quality['verifier']}: calibration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    axn.set(xlabel="verifier score (bins of 0.1)", ylabel="count", yscale="log")
    axn.grid(alpha=0.3)
    return Figure(stem.name, "Reliability diagram: points on the diagonal mean a score of s is right a share s "
                                 "of the time; bars count the scores per bin.",
                  save_figure(fig, stem.parent, stem.name))


ARM_STYLE = {"oracle": ("exact oracle", "black", "-", "o"),
             "verifier": (None, "tab:blue", "-", "s"),
             "matched": ("exact oracle + matched flip noise", "tab:red", "--", "^"),
             "matched_scores": ("exact oracle + matched score noise", "tab:green", "-.", "v")}
"""Label (None: the verifier's name), colour, line style and marker of each arm of a verifier study."""


def arms_figure(table, quality: dict, out_dir: Path) -> Figure:
    """Accuracy of each arm (oracle, the verifier, the matched flip noise) against the budget (top) and against
    FLOPs per problem (bottom), one column per strategy; best-of-k from its pools (argmax), the step-wise search
    one point per budget."""
    from plots import budget_axis
    from plots.table import curve

    plt = pyplot()
    table = table.assign(arm=table["job"].str.split("/").str[1], family=table["job"].str.split("/").str[0])
    families = [f for f in dict.fromkeys(table["family"]) if f in set(table["strategy"])]
    fig, axes = plt.subplots(2, len(families), figsize=(5.2 * len(families), 7.6), squeeze=False,
                             layout="constrained")
    for col, family in enumerate(families):
        part = table[table["family"] == family]
        rule = "argmax" if family == "best_of_k" else part["selection"].iloc[0]
        for arm, (text, colour, ls, marker) in ARM_STYLE.items():
            c = curve(part[(part["arm"] == arm) & (part["selection"] == rule)], extra=("flops",))
            if c.empty:
                continue
            name = text or quality["verifier"]
            for ax, x in ((axes[0, col], c["k"]), (axes[1, col], c["flops"])):
                ax.plot(x, c["accuracy"], ls, marker=marker, ms=4, color=colour, label=name)
                ax.fill_between(x, c["lo"], c["hi"], color=colour, alpha=0.12, lw=0)
        if family == "best_of_k":
            m = curve(part[(part["arm"] == "oracle") & (part["selection"] == "majority")], extra=("flops",))
            axes[0, col].plot(m["k"], m["accuracy"], ":", color="grey", label="majority vote (no verifier)")
            axes[1, col].plot(m["flops"], m["accuracy"], ":", color="grey")
        budget_axis(axes[0, col], sorted(part["k"].unique()))
        axes[0, col].set_title(f"{family} ({rule})")
        axes[1, col].set_xscale("log")
        axes[1, col].set_xlabel("FLOPs per problem (policy + verifier, cache-less)")
        for ax in axes[:, col]:
            ax.set_ylabel("accuracy")
            ax.grid(alpha=0.3, which="both")
        axes[0, col].legend(fontsize=7, loc="lower right")
    def rate(x) -> str:            # None when its class is empty (a pool with no right candidate has no TPR)
        return "n/a" if x is None else f"{x:.2f}"

    rates = "; ".join(f"{lvl}: TPR {rate(r['tpr'])}, FPR {rate(r['fpr'])}" for lvl, r in quality["matched_flip"].items())
    # two lines: one column of panels is narrower than the title with both levels' rates
    fig.suptitle(f"{quality['verifier']} beside the exact oracle and the flip noise of its rates\n({rates})",
                 fontsize=10)
    return Figure("verifier_arms", f"Accuracy with {quality['verifier']}, with the exact oracle, and with the exact "
                                   f"oracle under flip noise of the verifier's measured rates (outcome rates for "
                                   f"best-of-k, step rates for the step-wise search); bands are 95% bootstrap "
                                   f"intervals.", save_figure(fig, out_dir, "verifier_arms"))
