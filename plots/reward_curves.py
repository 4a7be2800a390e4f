"""Reward against k for each false-positive cost (+1 right, -cost accepted wrong, 0 abstain), with the optimal k
marked: measured (dot) and predicted by the closed form (cross)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plots import Figure, budget_axis, pyplot, save_figure
from plots.table import curve


def best_k(ks, rewards) -> tuple[int, float]:
    """The budget with the highest reward, where k = 0 (never answer, reward 0) is always available: when every
    k >= 1 loses on average, the best policy is to abstain."""
    ks, rewards = np.asarray(ks), np.asarray(rewards, dtype=float)
    i = int(np.argmax(rewards))
    return (int(ks[i]), float(rewards[i])) if rewards[i] > 0 else (0, 0.0)


def optimal_k(table: pd.DataFrame) -> pd.DataFrame:
    """Per false-positive cost: the k with the highest mean reward (0 = never answer, when every k loses), measured
    and (where a closed form exists) predicted, with the rewards there."""
    accept = table[table["selection"] == "accept"]
    out = []
    for cost, part in accept.groupby("fp_cost"):
        c = part.groupby("k", as_index=False)[["reward", "reward_closed_form"]].mean()
        k, reward = best_k(c["k"], c["reward"])
        row = {"fp_cost": cost, "optimal_k": k, "reward_at_optimum": reward}
        if c["reward_closed_form"].notna().all():
            k, reward = best_k(c["k"], c["reward_closed_form"])
            row.update(predicted_optimal_k=k, predicted_reward=reward)
        out.append(row)
    return pd.DataFrame(out)


def reward_vs_k(table: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Drawn when the table has more than one false-positive cost."""
    accept = table[table["selection"] == "accept"]
    if accept["fp_cost"].nunique() < 2:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    costs = sorted(accept["fp_cost"].unique())
    colours = plt.cm.plasma(np.linspace(0, 0.85, len(costs)))
    for colour, cost in zip(colours, costs):
        c = curve(accept[accept["fp_cost"] == cost], "reward", extra=("reward_closed_form",)).rename(
            columns={"reward_closed_form": "closed_form"})
        ax.plot(c["k"], c["reward"], "-", color=colour, label=f"fp_cost={cost:g}")
        ax.fill_between(c["k"], c["lo"], c["hi"], color=colour, alpha=0.12, lw=0)
        k, reward = best_k(c["k"], c["reward"])
        if k:                                   # k = 0 (never answer) has no point on a log axis
            ax.plot(k, reward, "o", color=colour, ms=7)
        if c["closed_form"].notna().all():
            ax.plot(c["k"], c["closed_form"], "--", color=colour, lw=1)
            k, reward = best_k(c["k"], c["closed_form"])
            if k:
                ax.plot(k, reward, "x", color=colour, ms=8, mew=2)
    budget_axis(ax, accept["k"].unique())
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("reward per problem (+1 right, -fp_cost wrong, 0 abstain)")
    first = accept.iloc[0]
    noise = f"flip TPR {first['tpr']:g}, FPR {first['fpr']:g}" if first["noise"] == "flip" else first["noise"]
    ax.set_title(f"Reward of accept-or-abstain under {noise}: optimal k measured (dot), predicted (cross)\n"
                 "measured: solid with 95% bootstrap interval; closed form: dashed; no dot: never answering "
                 "(k = 0) is best", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return [Figure("reward_vs_k", "The costlier a false positive, the fewer samples pay: the reward-maximising k "
                                  "falls as fp_cost rises, and the closed form predicts where.",
                   save_figure(fig, out_dir, "reward_vs_k"))]
