"""Figures of the allocation report, read only from its ``allocation.json`` (written by ``search.allocate``).

    compute_optimal   accuracy against samples per problem: best-of-N, majority, the best single strategy and the
                      compute-optimal strategy per difficulty bin (oracle and predicted bins)
    by_difficulty     every rule against k in each oracle difficulty bin: which strategy each bin wants
    adaptive_budget   a fixed total budget spread by predicted difficulty against the same budget spread evenly
    early_stopping    stopping rules against fixed-k majority vote and best-of-k, by samples and by tokens

Error bars and bands are 95% intervals (the allocation's over split-and-bootstrap replicates, early stopping's over
problems).
"""
from __future__ import annotations

from pathlib import Path

from plots import Figure, budget_axis, pyplot, save_figure

SIGNAL_STYLE = {"oracle": ("tab:purple", "oracle bins (pool pass rate)"),
                "agreement": ("tab:brown", "predicted bins: answer agreement")}
"""Colour and label per difficulty signal (a verifier score signal gets the next colour of the cycle)."""


def _signal_style(signal: str, i: int) -> tuple[str, str]:
    if signal in SIGNAL_STYLE:
        return SIGNAL_STYLE[signal]
    return (["tab:cyan", "tab:olive", "tab:pink", "tab:red"][i % 4], f"predicted bins: {signal.replace(':', ' ')}")


def _series(fig_rows: dict, key: str, budgets) -> tuple[list, list, list, list]:
    xs, ys, lo, hi = [], [], [], []
    for B in budgets:
        row = fig_rows.get(f"{key}@{B}")
        spent = fig_rows.get(f"{key}@{B}:spent", {"mean": B})["mean"]
        if row is None or row["mean"] != row["mean"]:
            continue
        xs.append(spent)
        ys.append(row["mean"])
        # the point is the mean over halvings, the interval from other replicates: it can fall just outside
        lo.append(max(0.0, row["mean"] - row["lo"]))
        hi.append(max(0.0, row["hi"] - row["mean"]))
    return xs, ys, lo, hi


def _paired_bars(ax, fig_rows: dict, key: str, budgets, i: int, colour: str, label: str) -> None:
    """A paired difference per budget with its interval, the i-th signal's bars set a little to the side of the
    others' so they do not hide each other."""
    xs, ys, lo, hi = _series(fig_rows, key, budgets)
    shift = 2 ** (0.06 * (i - 1))
    ax.errorbar([x * shift for x in xs], ys, yerr=[lo, hi], fmt="--D", color=colour, ms=4, capsize=2, label=label)


def plot_compute_optimal(res: dict, out_dir: Path) -> Figure:
    """Left: accuracy against mean samples per problem for each way of choosing the strategy. Right: the
    compute-optimal accuracy minus best-of-N's at the same budget, paired over the same test problems."""
    plt = pyplot()
    f, budgets = res["figures"], res["budgets"]
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.25, 1]})
    ks = res["ks"]
    bon = [f[f"bon@{k}"] for k in ks]
    ax.plot(ks, [b["mean"] for b in bon], "-", color="tab:blue", marker="o", ms=3,
            label=f"best-of-N ({res['bon_verifier']}), 95% band")
    ax.fill_between(ks, [b["lo"] for b in bon], [b["hi"] for b in bon], color="tab:blue", alpha=0.12, lw=0)
    for key, colour, label, style in (("majority", "tab:orange", "majority vote", "-"),
                                      ("single", "gray", "best single strategy (chosen on train)", ":")):
        xs, ys, _, _ = _series(f, key, budgets)
        ax.plot(xs, ys, style, color=colour, marker="s", ms=3, label=label)
    for i, s in enumerate(res["signals"]):
        colour, label = _signal_style(s, i)
        xs, ys, _, _ = _series(f, f"opt:{s}", budgets)
        ax.plot(xs, ys, "--", color=colour, marker="D", ms=4, label=f"compute-optimal, {label}")
        _paired_bars(dx, f, f"minus_bon:{s}", budgets, i, colour, label)
    budget_axis(ax, ks)
    ax.set_xlabel("samples per problem spent (test-time signals include their samples)")
    ax.set_ylabel("accuracy on the evaluation half")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    budget_axis(dx, budgets)
    dx.axhline(0.0, color="tab:blue", lw=1)
    dx.set_xlabel("budget: samples per problem allowed")
    dx.set_ylabel("compute-optimal minus best-of-N at that budget")
    dx.grid(alpha=0.3)
    dx.legend(fontsize=7, frameon=False, loc="upper left")
    fig.suptitle(f"{res['n_problems']} problems, means over {res['splits']} train/test halvings; 95% intervals over "
                 f"{res['replicates']} halvings x bootstraps (right: paired on the same test problems)", fontsize=9)
    fig.tight_layout()
    return Figure("compute_optimal", "Accuracy against samples per problem when each difficulty bin gets its own "
                  "best rule and k (chosen on one half of the problems, measured on the other), against best-of-N, "
                  "majority vote and the single best strategy; right, the paired gain over best-of-N.",
                  save_figure(fig, out_dir, "compute_optimal"))


def plot_by_difficulty(res: dict, out_dir: Path) -> Figure:
    """One panel per oracle difficulty bin: each rule's accuracy against k."""
    plt = pyplot()
    rows = res["best_per_oracle_bin"]
    bins = sorted({r["bin"] for r in rows})
    fig, axes = plt.subplots(1, len(bins), figsize=(3.2 * len(bins), 3.4), sharey=True, squeeze=False)
    colours = {"majority": "tab:orange"}
    for ax, b in zip(axes[0], bins):
        part = sorted((r for r in rows if r["bin"] == b), key=lambda r: r["budget"])
        ks = [r["budget"] for r in part]
        verifiers = list(dict.fromkeys(rule.split(":", 1)[1] for rule in res["rules"] if ":" in rule))
        for rule in res["rules"]:
            kind, _, name = rule.partition(":")
            colour = colours.get(rule) or ["tab:blue", "tab:green", "tab:red", "tab:cyan"][verifiers.index(name) % 4]
            ax.plot(ks, [r[f"{rule}@{k}"] for r, k in zip(part, ks)], "--" if kind == "weighted" else "-",
                    marker="o", ms=3, color=colour,
                    label=rule.replace("argmax:", "best-of-k: ").replace("weighted:", "weighted vote: "))
        budget_axis(ax, ks)
        ax.set_xlabel("k")
        ax.set_title(f"pass rate {part[0]['pass_rate_lo']:.2f}-{part[0]['pass_rate_hi']:.2f} (n={part[0]['n']})",
                     fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].set_ylim(0, 1.02)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("which strategy each difficulty bin wants (oracle bins, all problems)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1 + 0.03 * (len(labels) // 4), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    return Figure("by_difficulty", "Each rule's accuracy against k within each oracle difficulty bin: where the "
                  "curves cross, easy and hard problems want different strategies.",
                  save_figure(fig, out_dir, "by_difficulty"))


def plot_adaptive(res: dict, out_dir: Path) -> Figure:
    """Left: accuracy at a fixed total budget, spread by predicted difficulty or evenly. Right: the paired gain of
    the adaptive spread over the even one, with its interval."""
    plt = pyplot()
    f, budgets = res["figures"], res["budgets"]
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(12, 4.4))
    xs, ys, _, _ = _series(f, "single", budgets)
    ax.plot(xs, ys, "-", color="gray", marker="s", ms=3, label="uniform: every problem the same k (best rule on train)")
    for i, s in enumerate(res["signals"]):
        colour, label = _signal_style(s, i)
        xs, ys, _, _ = _series(f, f"adaptive:{s}", budgets)
        ax.plot(xs, ys, "--", color=colour, marker="D", ms=4, label=f"adaptive, {label}")
        _paired_bars(dx, f, f"gain:{s}", budgets, i, colour, label)
    budget_axis(ax, res["ks"])
    ax.set_xlabel("mean samples per problem spent (total budget / problems)")
    ax.set_ylabel("accuracy on the evaluation half")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    budget_axis(dx, budgets)
    dx.axhline(0.0, color="gray", lw=1)
    dx.set_xlabel("total budget / problems")
    dx.set_ylabel("adaptive minus uniform (paired)")
    dx.grid(alpha=0.3)
    dx.legend(fontsize=7, frameon=False, loc="upper left")
    fig.suptitle("one total budget spread by predicted difficulty (k = 0 gives a problem up); 95% intervals over "
                 "halvings x bootstraps", fontsize=9)
    fig.tight_layout()
    return Figure("adaptive_budget", "Accuracy for a fixed total budget when k is chosen per difficulty bin (giving "
                  "up allowed) against the same budget spread evenly; right, the paired gain.",
                  save_figure(fig, out_dir, "adaptive_budget"))


def plot_early_stopping(es: dict, out_dir: Path) -> Figure:
    """Stopping rules as points (samples and tokens used) against the fixed-k curves."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    ks = es["ks"]
    per_tok, prompt = es["tokens_per_sample"], es["prompt_tokens"]
    markers = {"adaptive": "D", "esc": "s", "confident": "^", "consensus": "v"}
    colours = {"adaptive": "tab:purple", "esc": "tab:brown", "confident": "tab:red", "consensus": "tab:green"}
    for ax, unit in zip(axes, ("samples", "tokens")):
        x = ks if unit == "samples" else [prompt + k * per_tok for k in ks]
        ax.plot(x, es["majority"], "-", color="tab:orange", label="fixed-k majority vote")
        if es.get("best_of_k"):
            ax.plot(x, es["best_of_k"], "-", color="tab:blue", label=f"fixed-k best-of-k ({es['verifier']})")
        seen = set()
        for j, r in enumerate(es["rules"]):
            kind = r["kind"]
            # x bars only: the accuracy intervals (as wide as the spread between problems) are in the table
            xerr = [[max(0.0, r[unit] - r[f"{unit}_lo"])], [max(0.0, r[f"{unit}_hi"] - r[unit])]]
            ax.errorbar([r[unit]], [r["accuracy"]], xerr=xerr,
                        fmt=markers[kind], color=colours[kind], ms=5, capsize=2,
                        label=None if kind in seen else f"early stop: {kind}")
            seen.add(kind)
            ax.annotate(r["rule"].split("(")[1].rstrip(")"), (r[unit], r["accuracy"]), fontsize=6,
                        color=colours[kind], xytext=(4, 5 if j % 2 else -9), textcoords="offset points")
        ax.set_xscale("log", base=2 if unit == "samples" else 10)
        ax.set_xlabel("mean samples per problem" if unit == "samples" else "mean tokens per problem (prompt + samples)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, frameon=False, loc="upper left")
    fig.suptitle(f"early stopping on {es['n_problems']} pools ({es['draws']} orderings each, cap "
                 f"{es['rules'][0]['cap']}); bars: 95% bootstrap over problems of the compute used", fontsize=9)
    fig.tight_layout()
    return Figure("early_stopping", "Stopping rules (a point per threshold or window) against fixed-k majority vote "
                  "and best-of-k, by the samples and the tokens they used.",
                  save_figure(fig, out_dir, "early_stopping"))
