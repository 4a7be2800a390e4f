"""Scaling curves of one run: accuracy of every selection rule against budget k and against FLOPs.

    python -m plots outputs/2026-11-23/10-00-00-best_of_k-outcome_oracle      # writes scaling.png/.svg there

Reads only the run's summary.json (its per-budget table); bands are the 95% bootstrap intervals over problems.
"""
from __future__ import annotations

import json
from pathlib import Path

from plots import RULE_STYLE, pyplot, save_figure


def plot_run(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw the run's curves; return the files written (PNG and SVG)."""
    plt = pyplot()
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    rows = summary.get("budgets")
    if not rows:
        raise SystemExit(f"error: {run_dir}/summary.json has no per-budget table: plot a best-of-k run")
    out_dir = Path(out_dir or run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ks = [r["k"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, xkey, xlabel in ((axes[0], "k", "budget k (samples per problem)"),
                             (axes[1], "flops", "policy + verifier FLOPs per problem (cache-less)")):
        xs = ks if xkey == "k" else [r["flops"] for r in rows]
        for rule, (label, colour, style) in RULE_STYLE.items():
            if rule == "accept":        # run figures show the rules of the printed table
                continue
            ys = [r[rule] for r in rows]
            ax.plot(xs, ys, style, color=colour, marker="o", ms=3, label=label)
            ax.fill_between(xs, [r[f"{rule}_lo"] for r in rows], [r[f"{rule}_hi"] for r in rows],
                            color=colour, alpha=0.15, lw=0)
        ax.set_xscale("log", base=2 if xkey == "k" else 10)
        if xkey == "k":
            ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("accuracy (share of problems solved)")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(f"{summary['task']}, {summary['n_problems']} problems: policy {summary['policy_model_id']}, "
                 f"verifier {summary['verifier']} (bands: 95% bootstrap over problems)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, "scaling")
