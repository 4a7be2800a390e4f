"""The allocation report page (report.md with its PNG figures), read only from ``allocation.json``.

    python -m search.allocate POOLS... --out DIR     # (lab allocate) computes allocation.json, then this page
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from plots.allocation_curves import plot_adaptive, plot_by_difficulty, plot_compute_optimal, plot_early_stopping


def _ci(row: dict, digits: int = 3) -> str:
    m = row["mean"]
    if m != m:
        return "n/a"
    return f"{m:.{digits}f} [{row['lo']:.{digits}f}, {row['hi']:.{digits}f}]"


def _ratio(row: dict, spent: float) -> str:
    hi = "inf" if math.isinf(row["hi"]) else f"{row['hi']:.2f}"
    lo = "inf" if math.isinf(row["lo"]) else f"{row['lo']:.2f}"
    if row["mean"] != row["mean"]:
        bound = row.get("upper_bound_if_censored", float("nan"))
        return f"> {bound:.2f} (best-of-N never matches) [{lo}, {hi}]" if bound == bound else "n/a"
    return f"{row['mean']:.2f} [{lo}, {hi}]" + (f", {row['censored']:.0%} of replicates unmatched"
                                                 if row["censored"] else "")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def render(res: dict, figures: dict) -> str:
    """The page's markdown."""
    f, budgets, signals = res["figures"], res["budgets"], res["signals"]
    lines = [f"# Allocation report: {res['source']}", "",
             f"{res['n_problems']} problems, pools of {res['pool_size']} samples; verifiers as strategies: "
             f"{', '.join(res['verifiers']) or 'none'}; best-of-N by {res['bon_verifier']}. "
             f"**Generation requests sent: 0** (this report reads existing pools only; it builds no policy and "
             f"starts no server).", "",
             f"Difficulty bins: {res['n_bins']} quantile bins of the signal on the train half; test-time signals "
             f"use the first m = {res['m']} samples of each pool, charged to every problem, and the strategies are "
             f"evaluated on the remaining samples. Every figure is the mean over {res['splits']} random halvings "
             f"(choose on one half, measure on the other); intervals are 95% percentile intervals over "
             f"{res['replicates']} replicates that each draw a halving and resample the test half.", "",
             "Correlation of each test-time signal with the oracle pass rate: "
             + ", ".join(f"{s} {c:.2f}" for s, c in res["signal_quality"].items()) + ".", "",
             "## Compute-optimal strategy by difficulty", "", f"![compute-optimal]({figures['compute_optimal']})", ""]
    head = ["budget", "best-of-N", "majority", "best single"] + [f"optimal ({s})" for s in signals]
    rows = []
    for B in budgets:
        cells = [str(B), _ci(f[f"bon@{B}"]), _ci(f[f"majority@{B}"]), _ci(f[f"single@{B}"])]
        for s in signals:
            row = f[f"opt:{s}@{B}"]
            cells.append("n/a (budget within the signal)" if row["mean"] != row["mean"]
                         else f"{_ci(row)} at {f[f'opt:{s}@{B}:spent']['mean']:.1f}; minus best-of-N "
                              f"{_ci(f[f'minus_bon:{s}@{B}'])}")
        rows.append(cells)
    lines += _table(head, rows) + ["", "Compute ratio: the samples best-of-N needs to match the compute-optimal "
                                   "accuracy, over the samples the compute-optimal strategy spent (> 1: it saves "
                                   "compute).", ""]
    rows = [[str(B)] + [_ratio(f[f"ratio:{s}@{B}"], f[f"opt:{s}@{B}:spent"]["mean"]) for s in signals]
            for B in budgets]
    lines += _table(["budget"] + [f"ratio ({s})" for s in signals], rows)
    lines += ["", "### Which strategy each difficulty bin wants", "", f"![by difficulty]({figures['by_difficulty']})",
              ""]
    per = res["best_per_oracle_bin"]
    rows = [[f"{r['pass_rate_lo']:.2f}-{r['pass_rate_hi']:.2f}", str(r["n"]), str(r["budget"]),
             f"{r['best_rule']} k={r['best_k']}", f"{r['best_accuracy']:.3f}"]
            + [f"{r[rule + '@' + str(r['budget'])]:.3f}" for rule in res["rules"]]
            for r in per if r["budget"] in (budgets[len(budgets) // 2], budgets[-1])]
    lines += _table(["pass rate", "problems", "budget", "best (k <= budget)", "its accuracy"]
                    + [f"{rule} at k=budget" for rule in res["rules"]], rows)
    lines += ["", "## Adaptive budgets across problems", "", f"![adaptive budget]({figures['adaptive_budget']})", "",
              "One total budget (budget x problems samples); each bin gets its own k (k = 0: no further sample, answer "
              "with the signal samples' plurality, or give up without signal samples), chosen on the train half to "
              "fit the budget; gain = adaptive minus uniform (every problem the same k, best rule on train).", ""]
    rows = []
    for B in budgets:
        cells = [str(B), _ci(f[f"single@{B}"])]
        for s in signals:
            a = f.get(f"adaptive:{s}@{B}")
            cells.append("n/a" if a is None or a["mean"] != a["mean"] else
                         f"{_ci(a)} at {f[f'adaptive:{s}@{B}:spent']['mean']:.1f}; gain {_ci(f[f'gain:{s}@{B}'])}"
                         f"; a bin got k = 0 in {f[f'gave_up:{s}@{B}']['mean']:.0%} of halvings")
        rows.append(cells)
    lines += _table(["budget", "uniform"] + [f"adaptive ({s})" for s in signals], rows)
    es = res.get("early_stopping")
    if es:
        lines += ["", "## Early stopping within a problem", "", f"![early stopping]({figures['early_stopping']})",
                  "", f"Each rule on every pool, averaged over {es['draws']} random orderings of the pool (cap "
                  f"{max(r['cap'] for r in es['rules'])} samples); 95% bootstrap intervals over problems. 'vs "
                  f"majority at same samples' is paired over problems; 'cap/samples' is the saving against "
                  f"fixed-k majority at the cap; 'savings at matched accuracy' is the samples fixed-k majority "
                  f"needs to reach the rule's accuracy over the samples the rule used.", ""]
        rows = []
        for r in es["rules"]:
            sav = ("never matched" if r["savings"] != r["savings"] else
                   f"{r['savings']:.2f} [{r['savings_lo']:.2f}, {r['savings_hi']:.2f}]")
            rows.append([r["rule"], f"{r['accuracy']:.3f} [{r['accuracy_lo']:.3f}, {r['accuracy_hi']:.3f}]",
                         f"{r['samples']:.1f}", f"{r['tokens']:.0f}",
                         f"{r['minus_majority_at_same_samples']:+.3f} [{r['minus_majority_at_same_samples_lo']:+.3f}, "
                         f"{r['minus_majority_at_same_samples_hi']:+.3f}]",
                         (f"{r['minus_best_of_k_at_same_samples']:+.3f}" if "minus_best_of_k_at_same_samples" in r
                          else ""),
                         f"{r['minus_majority_at_cap']:+.3f} [{r['minus_majority_at_cap_lo']:+.3f}, "
                         f"{r['minus_majority_at_cap_hi']:+.3f}]", f"{r['cap_over_samples']:.1f}x", sav])
        lines += _table(["rule", "accuracy", "samples", "tokens", "vs majority at same samples",
                         "vs best-of-k at same samples", "vs majority at cap", "cap/samples",
                         "savings at matched accuracy"], rows)
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path) -> list[Path]:
    """Draw the figures and write report.md from ``out_dir/allocation.json``; returns the files written."""
    out_dir = Path(out_dir)
    res = json.loads((out_dir / "allocation.json").read_text())
    figs = [plot_compute_optimal(res, out_dir), plot_by_difficulty(res, out_dir), plot_adaptive(res, out_dir)]
    if res.get("early_stopping"):
        figs.append(plot_early_stopping(res["early_stopping"], out_dir))
    names = {fig.name: fig.paths[0].name for fig in figs}
    (out_dir / "report.md").write_text(render(res, names))
    return [out_dir / "report.md"] + [p for fig in figs for p in fig.paths]
