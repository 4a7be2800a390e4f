"""Step-wise search: the shared mechanics on their own, and all four strategies end to end through the real vLLM
server on the shipped policy with the exact process oracle (small budgets)."""
import json

import numpy as np
import pytest
from hydra.utils import instantiate

from search.contracts import LabError
from search.build import build, compose
from search.engine.runner import resolve_budgets, run
from search.strategies.particles import systematic_resample
from search.strategies.stepwise import AGGREGATES, StepSearch

STRATEGIES = ["beam_search", "dvts", "mcts", "particle_filtering"]
SMALL = ["n_problems=6", "strategy.budget=4", "cache_path=null", "bootstrap_resamples=200"]


def config(*overrides):
    return compose(overrides)


def test_aggregates():
    s = (0.9, 0.5, 0.8)
    assert [AGGREGATES[a](s) for a in ("last", "min", "prod", "mean")] == pytest.approx([0.8, 0.5, 0.36, 2.2 / 3])


def test_systematic_resampling_keeps_heavy_particles_and_drops_empty_ones():
    rng = np.random.default_rng(0)
    w = np.array([0.5, 0.0, 0.25, 0.25])
    for _ in range(100):
        idx = systematic_resample(w, rng)
        assert len(idx) == 4 and 1 not in idx and list(idx).count(0) == 2
        assert list(idx).count(2) == 1 and list(idx).count(3) == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_refuses_an_outcome_verifier_with_one_line(strategy):
    cfg = config(f"strategy={strategy}", "verifier=outcome_oracle")
    task = instantiate(cfg.task)
    strat = instantiate(cfg.strategy)
    with pytest.raises(LabError, match="needs a process verifier.*verifier=process_oracle"):
        strat.check_verifier(instantiate(cfg.verifier, task=task))
    assert resolve_budgets(cfg.budgets, strat) == [strat.budget]


def test_bad_strategy_settings_name_the_field():
    with pytest.raises(LabError, match="strategy.aggregate"):
        StepSearch(aggregate="max")
    with pytest.raises(LabError, match="strategy.expansions"):
        build(config("strategy=beam_search", "strategy.budget=2", "strategy.expansions=4"), "strategy")


@pytest.mark.server
@pytest.mark.parametrize("strategy,extra", [(s, ()) for s in STRATEGIES] + [
    ("beam_search", ("strategy.lookahead=1",))])
def test_strategy_runs_end_to_end_on_the_real_server(tmp_path, strategy, extra):
    summary = run(config(f"strategy={strategy}", "verifier=process_oracle", *SMALL, *extra), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert summary["strategy"] == strategy and summary["n_problems"] == 6 and len(records) == 6
    (row,) = summary["budgets"]
    assert row["k"] == 4 and 0.0 <= row["argmax_lo"] <= row["argmax"] <= row["argmax_hi"] <= 1.0
    assert row["argmax"] == pytest.approx(np.mean([r["correct"] for r in records]))
    for r in records:
        led = r["ledger"]
        assert led["policy_requests"] >= 1 and led["completion_tokens"] > 0 and led["verifier_candidates"] > 0
        # every kept solution is finished and graded; the answer is one of theirs
        assert r["n_samples"] == len(r["pool"]["text"]) >= 1
        if r["extras"]["finished"]:
            assert r["answer"] in r["pool"]["answer"]
    assert summary["by_difficulty"] and {d["difficulty_key"] for d in summary["by_difficulty"]} == {"n_ops"}
    # the exact process oracle finds most of these short chains at budget 4
    assert row["argmax"] >= 0.5


@pytest.mark.server
def test_search_is_reproducible_and_noise_applies_per_step(tmp_path):
    a = run(config("strategy=beam_search", "verifier=process_oracle", *SMALL), tmp_path / "a")
    b = run(config("strategy=beam_search", "verifier=process_oracle", *SMALL), tmp_path / "b")

    def texts(d):
        return {json.loads(x)["problem_id"]: json.loads(x)["pool"]["text"]
                for x in (d / "records.jsonl").read_text().splitlines()}

    assert texts(tmp_path / "a") == texts(tmp_path / "b") and a["budgets"] == b["budgets"]
    noisy = run(config("strategy=particle_filtering", "verifier=process_oracle", "noise=flip", "noise.fpr=0.5",
                       *SMALL), tmp_path / "c")
    assert noisy["verifier"] == "process_oracle+flip" and noisy["noise"]["fpr"] == 0.5
    scores = [s for x in (tmp_path / "c" / "records.jsonl").read_text().splitlines()
              for s in json.loads(x)["pool"]["score"]]
    assert set(scores) <= {0.0, 1.0}
