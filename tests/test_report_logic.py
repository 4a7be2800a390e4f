"""Report and table logic on hand-made tables (no server): the optimal number of samples under a false-positive
cost, including never answering."""
import pandas as pd

from plots.reward_curves import optimal_k


def reward_table(rewards_by_cost: dict[float, list[float]], ks=(1, 2, 4)) -> pd.DataFrame:
    rows = []
    for cost, rewards in rewards_by_cost.items():
        for k, r in zip(ks, rewards):
            rows.append({"selection": "accept", "fp_cost": cost, "k": k, "reward": r, "reward_closed_form": r - 0.01})
    return pd.DataFrame(rows)


def test_optimal_k_is_zero_when_every_budget_loses():
    """Abstaining always scores 0, so when every k >= 1 has a negative mean reward the best is never to answer
    (k = 0); the old search over k >= 1 reported the least bad k instead."""
    best = optimal_k(reward_table({0.0: [0.5, 0.6, 0.7], 8.0: [-0.2, -0.5, -0.9]})).set_index("fp_cost")
    assert best.loc[0.0, "optimal_k"] == 4 and best.loc[0.0, "reward_at_optimum"] == 0.7
    assert best.loc[8.0, "optimal_k"] == 0 and best.loc[8.0, "reward_at_optimum"] == 0.0
    assert best.loc[8.0, "predicted_optimal_k"] == 0
    assert best.loc[0.0, "predicted_optimal_k"] == 4
