"""Figures and report page of the expert-iteration study (``search.expert_iteration``), read from its ``rounds.csv``
(one row per arm and round) and ``curves.parquet`` (one row per arm, round, rule and k):

- ``rounds``: pass@1, pass@max_k and majority@max_k against the round, a line per arm (the verifier), with 95%
  intervals; beside it the data each round kept and the share of it that is wrong;
- ``curves_by_round``: coverage and majority vote against k for each round, a panel per arm;
- ``distill`` (when the grid distils): coverage and majority vote against test-time FLOPs per problem for the
  teachers (the start and the distilled arm's last round) and the smaller students (trained by the recipe alone,
  and fine-tuned on the arm's data), so equal compute is a vertical line.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, budget_axis, pyplot, save_figure

ARM_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")
"""Colour of each arm, in grid order."""


def rounds_figure(table: pd.DataFrame, max_k: int, out: Path) -> Figure:
    """Accuracy over rounds per arm, and the kept data with its wrong share."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), layout="constrained")
    arms = list(dict.fromkeys(table.arm))
    for colour, arm in zip(ARM_COLOURS, arms):
        rows = table[table.arm == arm].sort_values("round")
        for ax, key, lo, hi in ((axes[0], "pass_at_1", "pass_at_1_ci_low", "pass_at_1_ci_high"),
                                (axes[1], "pass_at_max_k", "pass_at_max_k_ci_low", "pass_at_max_k_ci_high"),
                                (axes[2], "majority_at_max_k", "majority_ci_low", "majority_ci_high")):
            y = rows[key].to_numpy()
            ax.errorbar(rows["round"], y, yerr=[y - rows[lo].to_numpy(), rows[hi].to_numpy() - y], color=colour,
                        marker="o", capsize=2, label=arm)
        later = rows[rows["round"] > 0]
        if "kept" in later:
            width = 0.8 / len(arms)
            x = later["round"] + (arms.index(arm) - (len(arms) - 1) / 2) * width
            axes[3].bar(x, later["kept"], width=width, color=colour, alpha=0.5, label=f"{arm}: kept")
            axes[3].bar(x, later["kept"] * later["kept_wrong_share"].fillna(0), width=width, color=colour,
                        hatch="//", edgecolor="black", label=f"{arm}: kept but wrong")
    for ax, title in zip(axes, ("pass@1", f"pass@{max_k} (coverage)", f"majority vote @{max_k}",
                                "solutions kept for fine-tuning (hatched: wrong)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round (0: the start policy)")
        ax.grid(alpha=0.3)
    for ax in axes[:3]:
        ax.set_ylim(0, 1.02)
    for ax in axes:
        ax.set_xticks(sorted(table["round"].unique()))
    axes[0].set_ylabel("accuracy on the evaluation set")
    axes[0].legend(fontsize=7, frameon=False)
    axes[3].legend(fontsize=6, frameon=False)
    return Figure("rounds", "Each loop's policy over rounds: pass@1, pass@k and majority vote on the evaluation set "
                  "(95% intervals), and the training data each round kept, with the part its verifier accepted "
                  "wrongly.", save_figure(fig, out, "rounds"))


def curves_by_round(curves: pd.DataFrame, out: Path) -> Figure:
    """Coverage (solid) and majority vote (dashed) against k, a line per round, a panel per arm."""
    plt = pyplot()
    arms = list(dict.fromkeys(curves.arm))
    fig, axes = plt.subplots(1, len(arms), figsize=(5 * len(arms), 4.2), layout="constrained", squeeze=False,
                             sharey=True)
    rounds = sorted(curves["round"].unique())
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(rounds)))
    for ax, arm in zip(axes[0], arms):
        for colour, r in zip(colours, rounds):
            for rule, ls in (("coverage", "-"), ("majority", "--")):
                rows = curves[(curves.arm == arm) & (curves["round"] == r) & (curves.rule == rule)].sort_values("k")
                ax.plot(rows.k, rows.accuracy, color=colour, ls=ls, label=f"round {r}" if rule == "coverage" else None)
        ks = sorted(curves.k.unique())
        budget_axis(ax, [k for k in ks if k & (k - 1) == 0 or k == ks[-1]])      # powers of two and the largest
        ax.set(xlabel="k (samples per problem)", ylim=(0, 1.02), title=f"arm: {arm}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False, title="solid: coverage, dashed: majority", title_fontsize=7)
    axes[0][0].set_ylabel("accuracy")
    return Figure("curves_by_round", "Best-of-k with the exact oracle (coverage, solid) and majority vote (dashed) "
                  "against k for every round's policy: does search's gain move into pass@1, and does pass@k narrow?",
                  save_figure(fig, out, "curves_by_round"))


def distill_figure(curves: pd.DataFrame, out: Path) -> Figure:
    """Coverage and majority vote against test-time FLOPs per problem, a line per teacher and student."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharey=True)
    policies = list(dict.fromkeys(curves.policy))
    styles = {p: ("tab:blue" if p.startswith("teacher") else "tab:orange",
                  "--" if p.endswith("start") or p.endswith("base") else "-") for p in policies}
    for ax, rule, title in zip(axes, ("coverage", "majority"), ("best-of-k, exact oracle (coverage)",
                                                                "majority vote")):
        for p in policies:
            rows = curves[(curves.policy == p) & (curves.rule == rule)].sort_values("k")
            colour, ls = styles[p]
            ax.plot(rows.test_flops, rows.accuracy, color=colour, ls=ls, label=p)
            ax.plot(rows.test_flops.iloc[:1], rows.accuracy.iloc[:1], color=colour, marker="o")   # k = 1
        ax.set(xscale="log", xlabel="test-time FLOPs per problem (k samples)", title=title, ylim=(0, 1.02))
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("accuracy on the evaluation set")
    axes[0].legend(fontsize=7, frameon=False, title="dot: k = 1", title_fontsize=7)
    return Figure("distill", "Teachers (blue) and smaller students (orange) against test-time compute: dashed before "
                  "the loop (the start policy; the student trained by the recipe alone), solid after it (the arm's "
                  "last round; the student fine-tuned on that arm's data). A vertical line is equal compute.",
                  save_figure(fig, out, "distill"))


def write_report(out: Path, grid: dict, table: pd.DataFrame, curves: pd.DataFrame,
                 distilled: dict | None = None) -> Path:
    """The figures, report.md and report.html of an expert-iteration study directory; returns report.md's path.
    ``distilled``: the distillation's tables (``policies``, ``matched``, ``curves``), when the grid distils."""
    from plots.report import render_html, render_markdown

    max_k = int(grid["max_k"])
    figures = [rounds_figure(table, max_k, out), curves_by_round(curves, out)]
    shown = table[[c for c in ("arm", "round", "pass_at_1", "pass_at_1_minus_start", "pass_at_1_minus_start_ci_low",
                               "pass_at_1_minus_start_ci_high", "pass_at_max_k", "pass_at_max_k_minus_start",
                               "majority_at_max_k", "distinct_answers",
                               "malformed_share", "sampled_correct_share", "accepted", "kept", "kept_problems",
                               "kept_wrong_share", "verifier_tpr", "verifier_fpr", "search_flops_per_problem",
                               "finetune_tokens", "training_flops") if c in table]]
    blocks = [
        ("h1", f"Expert iteration: {out.name}"),
        ("p", f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by `python -m search.expert_iteration`. Start: "
              f"{grid['start']}; {grid['rounds']} rounds; each round samples {grid['samples']} solutions of each of "
              f"{grid['problems']} training problems with the previous round's policy, keeps the distinct ones its "
              f"arm's verifier accepts (at most {grid['keep_per_problem']} per problem) and fine-tunes on them "
              f"({json.dumps(grid['finetune'])}). Arms: "
              f"{'; '.join(f'{a}: {s}' for a, s in grid['arms'].items())}. Every round's policy is measured with "
              f"best-of-k to k = {max_k} on the evaluation set; intervals are 95% bootstraps over problems."),
        ("h2", "Figures"), *[("figure", f) for f in figures],
        ("h2", "Every arm and round"),
        ("p", "pass@1 and pass@k on the evaluation set, and their paired differences from the start policy on the same "
              "problems (with 95% intervals for pass@1); distinct answers: mean number of different answers in a pool "
              f"of {max_k}; malformed: share of samples with no answer; sampled correct: share of the round's "
              "training samples that are right; accepted, kept (distinct, capped per problem), the problems they "
              "cover and the share of kept solutions that are wrong; the verifier's TPR and FPR on the samples; "
              "search FLOPs per problem: what a step-wise arm's search spent per training problem (the ledger's "
              "count; empty for sampling arms); training FLOPs are cumulative (the start's plus every fine-tune's "
              "6 x parameters x tokens)."),
        ("table", shown),
    ]
    if distilled is not None:
        spec = grid["distill"]
        matched = distilled["matched"]
        blocks += [
            ("h2", "Distillation into a smaller student"),
            ("p", f"The student ({json.dumps(spec['student'])}) is trained by the recipe "
                  f"{json.dumps(spec.get('training', {}))}, then fine-tuned round by round on what the "
                  f"{spec['arm']} arm kept, with the teacher's schedule. Test-time FLOPs per problem are 2 x "
                  "parameters x (prompt + k x completion tokens); at equal compute the student draws more samples: "
                  "for each teacher budget k its k' is the largest whose FLOPs do not exceed the teacher's "
                  "(capped: the student's whole pool costs less). Differences are paired over the evaluation "
                  "problems, with 95% bootstrap intervals. Coverage is best-of-k with a verifier that is always "
                  "right: verifier `free` counts the policies' FLOPs only (an exact checker), "
                  + (f"verifier `{spec['verifier']}` adds its forward pass over every sample to both sides "
                     "(a perfect verifier as costly as that model), " if spec.get("verifier") else "")
                  + "and majority needs no verifier."),
            ("figure", distill_figure(distilled["curves"], out)),
            ("table", distilled["policies"]),
            ("table", matched),
        ]
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(blocks))
    page.write_text(render_html(blocks, f"Expert iteration: {out.name}"))
    return md
