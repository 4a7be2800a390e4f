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


def test_a_sweep_over_a_plugins_own_parameter_is_a_column_and_never_averaged(tmp_path):
    """Two jobs of an external verifier that differ only in its own argument (+verifier.miss_score): the table has
    a column for it, the figures draw two settings labelled by it, and the report lists it as swept (the old
    table had no such column, and a figure averaged 0.662 and 0.534 into 0.598 under the title 'no noise')."""
    from plots.compute_curves import accuracy_vs_compute
    from plots.report import build_blocks
    from plots.table import label, settings
    from search.analysis.tables import collect
    from search.build import compose
    from search.engine.runner import run
    from tests.arith_fakes import with_fake_policy

    for job, miss in (("0", "0.0"), ("1", "0.5")):
        overrides = ["verifier=plugin", "verifier.name=calculator", f"+verifier.miss_score={miss}", "n_problems=8",
                     "strategy.budget=4", "bootstrap_resamples=20", "weighted_vote_draws=20"]
        run(with_fake_policy(compose(overrides), slip=0.3), tmp_path / job, tuple(overrides))
    table = collect(tmp_path)
    assert set(table["verifier.miss_score"]) == {0.0, 0.5}
    sets = settings(table)
    assert len(sets) == 2
    assert {label(s, sets) for _, s in sets.iterrows()} == {"verifier.miss_score=0", "verifier.miss_score=0.5"}
    assert len(accuracy_vs_compute(table, tmp_path)) == 2          # one figure per setting, not one average
    config = next(v for kind, v in build_blocks(table, [], tmp_path) if kind == "table")
    row = config.set_index("field").loc["verifier.miss_score"]
    assert row["swept"] == "yes" and row["value"] == "0, 0.5"
