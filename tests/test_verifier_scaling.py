"""The verifier scaling study (search/verifier_scaling.py) on its small grid, without a server: labels and pools
from the fake arithmetic policy, a few optimizer steps per cell.

What is checked: every cell trains, is scored and measured; the study's numbers against independent by-hand
computations from the stored scores (best-of-max_k as the top candidate's grade with ties shared, the within-problem
AUROC by counting pairs, the generation-verification gap by walking the steps, the baselines); a rerun resumes
without retraining and a different grid is refused; the sizes: a cut policy keeps its first blocks and a grown one
computes exactly what the policy does; bad input is one line and exit code 2. The served scores of a trained cell
against the in-process ones are checked in the server test at the end.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.build import compose
from search.contracts import LabError
from search.tasks.arith import ArithTask
from search.training.labels import label_solutions, write_jsonl
from search import verifier_scaling as study_cli
from tests.arith_fakes import ArithPolicy, with_fake_policy

TASK = ArithTask()


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """The small grid run end to end on fake labels (40 problems x 4) and fake pools (8 problems x 8)."""
    from search.engine.runner import run

    root = tmp_path_factory.mktemp("scaling")
    labels = root / "labels.jsonl"
    write_jsonl(label_solutions(TASK, ArithPolicy(slip=0.25), TASK.problems("train", 40), samples=4, rollouts=0,
                                seed=3), labels)
    pools = root / "pools"
    run(with_fake_policy(compose(["n_problems=8", "strategy.budget=8", "bootstrap_resamples=20",
                                  "weighted_vote_draws=20", "concurrency=1"]), slip=0.3), pools)
    grid = study_cli.load_grid("small")
    out = root / "study"
    report = study_cli.study(grid, out, labels, pools)
    return grid, out, labels, pools, report


def test_every_cell_is_trained_scored_measured_and_reported(small_study):
    grid, out, _, _, report = small_study
    names = [c.name for c in study_cli.cells(grid)]
    assert names == ["exact-policy-20", "exact-policy-80", "pairwise-policy-20", "pairwise-policy-80",
                     "exact-small-80"]
    cells = pd.read_csv(out / "cells.csv")
    assert list(cells.cell) == names
    for name in names:
        record = json.loads((out / "cells" / name / "training.json").read_text())
        assert record["training_flops"] == 6 * record["n_params"] * record["tokens"] > 0
        if name.startswith("pairwise"):   # only problems with both right and wrong solutions give pairs
            from search.training.fit import by_problem, split
            from search.training.labels import read_jsonl

            train, _ = split(read_jsonl(out.parent / "labels.jsonl"), 0, 0.25, record["max_solutions"])
            mixed = [g for g in by_problem(train) if len({s.correct for s in g}) == 2]
            assert record["train_solutions"] == sum(map(len, mixed)) < record["labelled_solutions"]
        else:
            assert record["train_solutions"] == record["labelled_solutions"]
    small, policy = (cells.set_index("cell").loc[n, "n_params"] for n in ("exact-small-80", "exact-policy-80"))
    assert small < policy
    amounts = cells.set_index("cell").train_solutions
    assert amounts["exact-policy-20"] < amounts["exact-policy-80"]
    results = pd.read_parquet(out / "results.parquet")
    for name in names:
        assert sorted(results[(results.cell == name) & (results.rule == "argmax")].k) == list(range(1, 9))
    for name in ("report.md", "report.html", "best_vs_training_flops.png", "accuracy_vs_k.png",
                 "within_auroc_vs_labels.png"):
        assert (out / name).stat().st_size > 0
    assert "generation-verification gap" in report.read_text()


def _top_grade(part: pd.DataFrame) -> float:
    """The grade of the highest-scoring candidate, ties shared: best-of-n on the whole pool, by hand."""
    top = part.score.max()
    return part[part.score == top].label.mean()


def _pairs_auroc(part: pd.DataFrame) -> float | None:
    right, wrong = part[part.label == 1].score.tolist(), part[part.label == 0].score.tolist()
    if not right or not wrong:
        return None
    wins = sum((r > w) + 0.5 * (r == w) for r, w in itertools.product(right, wrong))
    return wins / (len(right) * len(wrong))


def _weighted_whole_pool(part: pd.DataFrame, answers: list) -> float:
    """The weighted vote on the whole pool, by hand: each answer's total score, the top total wins (ties shared)."""
    totals: dict = {}
    for (_, row), answer in zip(part.sort_values("candidate").iterrows(), answers):
        if answer is not None:
            totals.setdefault(answer, [0.0, row.label == 1])[0] += row.score
    if not totals:
        return 0.0
    top = max(t for t, _ in totals.values())
    tied = [right for t, right in totals.values() if t >= top - 1e-12]
    return sum(tied) / len(tied)


def test_the_numbers_of_a_cell_against_hand_computations(small_study):
    from search.engine.stored_pools import load_pools

    _, out, _, pools, _ = small_study
    stored = {sp.problem.id: [c.answer for c in sp.candidates] for sp in load_pools(pools)[1]}
    for name in ("exact-policy-80", "pairwise-policy-20"):
        cdir = out / "cells" / name
        metrics = json.loads((cdir / "metrics.json").read_text())
        table = pd.read_parquet(cdir / "scores.parquet")
        outcome = table[table.level == "outcome"]
        by_problem = [part for _, part in outcome.groupby("problem_id")]
        assert len(by_problem) == 8 and all(len(p) == 8 for p in by_problem)
        assert metrics["best_of_max_k"] == pytest.approx(np.mean([_top_grade(p) for p in by_problem]), abs=1e-12)
        assert metrics["weighted_max_k"] == pytest.approx(
            np.mean([_weighted_whole_pool(p, stored[p.problem_id.iloc[0]]) for p in by_problem]), abs=1e-12)
        base = pd.read_parquet(out / "results.parquet")
        base = base[(base.cell == "baseline") & (base.rule == "majority") & (base.k == 8)].accuracy.iloc[0]
        assert metrics["weighted_minus_majority"] == pytest.approx(metrics["weighted_max_k"] - base, abs=1e-12)
        assert metrics["weighted_minus_majority_ci_low"] <= metrics["weighted_minus_majority"] \
            <= metrics["weighted_minus_majority_ci_high"]
        within = [v for v in map(_pairs_auroc, by_problem) if v is not None]
        assert metrics["within_auroc"] == pytest.approx(np.mean(within), abs=1e-12)
        assert metrics["within_problems"] == len(within)
        assert metrics["within_ci_low"] <= metrics["within_auroc"] <= metrics["within_ci_high"]
        curve = metrics["curve"]
        assert curve["accuracy"][0] == pytest.approx(outcome.label.mean(), abs=1e-12)      # k = 1: a random one
        best = int(np.argmax(curve["accuracy"]))
        assert (metrics["peak_k"], metrics["peak_accuracy"]) == (curve["k"][best], curve["accuracy"][best])
        assert metrics["verifier_solution_accuracy"] == pytest.approx(
            ((outcome.score >= 0.5) == (outcome.label == 1)).mean())
        right, wrong = outcome[outcome.label == 1], outcome[outcome.label == 0]
        assert metrics["verifier_solution_balanced_accuracy"] == pytest.approx(
            ((right.score >= 0.5).mean() + (wrong.score < 0.5).mean()) / 2)
        assert metrics["verifier_solution_auroc"] == pytest.approx(_pairs_auroc(outcome))
        if name.startswith("pairwise"):           # trained on the last separator only: no step verdicts
            assert metrics["step_auroc"] is None and "verifier_step_accuracy" not in metrics
            continue
        # the gap, by walking each candidate's steps
        fresh_right, fresh_judged = [], []
        for (_, _), steps in table[table.level == "step"].groupby(["problem_id", "candidate"]):
            prefix_ok = True
            for _, row in steps.sort_values("step").iterrows():
                if prefix_ok:
                    fresh_right.append(row.label == 1)
                    fresh_judged.append((row.score >= 0.5) == (row.label == 1))
                prefix_ok = prefix_ok and row.label == 1
        assert metrics["gap_steps"] == len(fresh_right)
        assert metrics["policy_step_accuracy"] == pytest.approx(np.mean(fresh_right))
        assert metrics["verifier_step_accuracy"] == pytest.approx(np.mean(fresh_judged))


def test_baselines_are_the_pools_own_coverage_and_majority(small_study):
    _, out, _, pools, _ = small_study
    results = pd.read_parquet(out / "results.parquet")
    base = results[results.cell == "baseline"].set_index(["rule", "k"]).accuracy
    summary = json.loads((pools / "summary.json").read_text())
    rows = {row["k"]: row for row in summary["budgets"]}
    for k in (1, 2, 4, 8):
        assert base["coverage", k] == pytest.approx(rows[k]["coverage"], abs=1e-12)
        assert base["majority", k] == pytest.approx(rows[k]["majority"], abs=1e-12)


def test_a_rerun_resumes_without_training_and_another_grid_is_refused(small_study):
    grid, out, labels, pools, _ = small_study
    stamp = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/training.json")}
    before = (out / "cells.csv").read_text()
    study_cli.study(grid, out, labels, pools)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/training.json")} == stamp
    assert (out / "cells.csv").read_text() == before
    other = {**grid, "max_k": 4}
    with pytest.raises(LabError, match="another grid"):
        study_cli.study(other, out, labels, pools)


def test_a_cut_policy_keeps_its_first_blocks_and_a_grown_one_computes_the_policy():
    import torch
    from transformers import LlamaForCausalLM

    from search.serving import checkpoint as ckpt
    from search.training.fit import fresh_or_policy

    policy = LlamaForCausalLM.from_pretrained(ckpt.resolve("tiny-policy")).eval()
    state = policy.model.state_dict()
    ids = torch.tensor([[1, 5, 9, 12, 7, 3, 20, 11]])
    grown = fresh_or_policy(LlamaForCausalLM.from_pretrained(ckpt.resolve("tiny-policy")).config, LlamaForCausalLM,
                            state, None, None, depth=8).eval()
    grown.lm_head.weight = grown.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.allclose(grown(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-5)
    assert sum(p.numel() for p in grown.model.layers.parameters()) == 2 * sum(
        p.numel() for p in policy.model.layers.parameters())
    cut = fresh_or_policy(LlamaForCausalLM.from_pretrained(ckpt.resolve("tiny-policy")).config, LlamaForCausalLM,
                          state, None, None, depth=2)
    assert len(cut.model.layers) == 2
    for key, value in cut.model.layers.state_dict().items():
        assert torch.equal(value, state[f"layers.{key}"])
    with pytest.raises(LabError, match="multiple of 4"):
        fresh_or_policy(policy.config, LlamaForCausalLM, state, None, None, depth=6)


@pytest.mark.parametrize("argv, words", [
    (["--grid", "nope"], "no such grid file"),
    (["--labels", "/nonexistent.jsonl"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        study_cli.main([*argv, "--out", str(tmp_path / "s")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


@pytest.mark.parametrize("name", sorted(p.stem for p in study_cli.GRIDS.glob("*.yaml")))
def test_every_shipped_grid_loads_with_families_and_amounts_it_claims(name):
    grid = study_cli.load_grid(name)
    assert study_cli.cells(grid)
    if name == "default":      # issue 15's floor: three sizes around the policy's, four amounts spanning 16x
        sizes = {c.size for c in study_cli.cells(grid)}
        amounts = sorted({c.amount for c in study_cli.cells(grid)})
        assert len(sizes) >= 3 and len(amounts) >= 4 and amounts[-1] >= 16 * amounts[0]
        assert {c.family for c in study_cli.cells(grid)} == set(study_cli.FAMILIES)


def test_a_grid_with_an_unknown_family_or_size_names_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    grid = study_cli.load_grid("small")
    grid["cells"] = [{"family": ["exact", "nope"], "size": ["policy"], "amount": [20]}]
    bad.write_text(json.dumps(grid))
    with pytest.raises(LabError, match="family 'nope'"):
        study_cli.load_grid(str(bad))
    grid["cells"] = [{"family": ["exact"], "size": ["huge"], "amount": [20]}]
    bad.write_text(json.dumps(grid))
    with pytest.raises(LabError, match="size 'huge'"):
        study_cli.load_grid(str(bad))
    grid["cells"] = [{"family": ["exact"], "size": ["policy"], "amount": [None]}]
    with pytest.raises(LabError, match="give its training 'steps'"):      # refused before any cell trains
        study_cli.cells(grid)


@pytest.mark.server
def test_the_in_process_scores_are_what_the_pooling_server_returns(small_study):
    """A trained cell served by vLLM as any PRM (verifier=prm verifier.checkpoint=DIR), or as an outcome reward
    model (verifier=orm), scores the pools' candidates as the study scored them in process."""
    from search.build import build_verifier
    from search.engine.stored_pools import load_pools

    _, out, _, pools, _ = small_study
    task, stored = load_pools(pools)
    for conf, cell in (("prm", "exact-policy-80"), ("orm", "pairwise-policy-80")):
        cdir = out / "cells" / cell
        table = pd.read_parquet(cdir / "scores.parquet")
        verifier, _ = build_verifier(compose([f"verifier={conf}", f"verifier.checkpoint={cdir}"]), task)
        assert verifier.kind == ("process" if conf == "prm" else "outcome")
        try:
            for sp in stored[:3]:
                served = verifier.score(sp.problem, sp.candidates).steps
                mine = table[(table.problem_id == sp.problem.id) & (table.level == "step")]
                for i, steps in enumerate(served):
                    if sp.candidates[i].steps:
                        expect = mine[mine.candidate == i].sort_values("step").score.to_numpy()
                        # an ORM is one score per candidate: the last step's
                        assert np.allclose(steps, expect if conf == "prm" else expect[-1:], atol=2e-3)
        finally:
            getattr(verifier, "close", lambda: None)()
