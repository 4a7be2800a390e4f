"""End to end through a real vLLM server on the shipped checkpoint (started once per test session).

Everything runs in this process, so every run, including the Hydra multirun, reuses the one warm server, exactly as
the jobs of a basic-launcher sweep do.
"""
import json
import sys

import pytest

from search.serving import vllm_server as server_mod
from search.build import compose
from search.engine.runner import run
from search.run import main

pytestmark = pytest.mark.server
SMALL = ["n_problems=6", "strategy.budget=8", "budgets=[1,2,4,8]", "report_budgets=[1,8]", "cache_path=null"]


def config(*overrides):
    return compose([*SMALL, *overrides])


def read_records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_best_of_k_end_to_end(tmp_path):
    summary = run(config(), tmp_path)
    records = read_records(tmp_path / "records.jsonl")
    assert len(records) == 6 and summary["n_problems"] == 6
    flags = summary["policy_server_flags"]              # how the server was started, in every summary
    assert flags[flags.index("--max-model-len") + 1] == "256" and "--no-enable-chunked-prefill" in flags
    # the tiny world's server runs eager with its worker in the engine core (docs/tiny-world.md), and really does
    assert "--enforce-eager" in flags and {"VLLM_ENABLE_V1_MULTIPROCESSING=0", "OMP_NUM_THREADS=1"} <= set(flags)
    from search.serving.vllm_server import _registry

    servers = [s for s in _registry.values() if s.model_path.endswith("tiny/policy") and s._proc is not None
               and all(f"{k}={v}" in flags for k, v in s.env.items())]
    assert servers
    for server in servers:
        environ = open(f"/proc/{server._proc.pid}/environ", "rb").read().split(b"\0")
        assert {b"VLLM_ENABLE_V1_MULTIPROCESSING=0", b"OMP_NUM_THREADS=1"} <= set(environ)
        assert "--enforce-eager" in server.command()
    for r in records:
        pool = r["pool"]
        assert len(pool["text"]) == 8 and len(pool["correct"]) == 8
        assert all(t > 0 for t in pool["completion_tokens"])
        assert set(pool["finish_reason"]) <= {"stop", "length"}
        # the oracle's score is the grade, and every token of the pool was charged to the ledger
        assert pool["score"] == [float(c) for c in pool["correct"]]
        assert r["ledger"]["completion_tokens"] == sum(pool["completion_tokens"])
        assert r["ledger"]["policy_requests"] == 1 and r["ledger"]["policy_samples"] == 8
        cov = r["by_k"]["coverage"]
        assert cov == sorted(cov) and abs(cov[0] - r["pool_accuracy"]) < 1e-12
        # with an exact oracle, best-of-k by score is coverage
        assert r["by_k"]["argmax"] == pytest.approx(cov, abs=1e-12)
    rows = summary["budgets"]
    assert [row["k"] for row in rows] == [1, 2, 4, 8]
    for row in rows:
        assert row["coverage_lo"] <= row["coverage"] <= row["coverage_hi"]
        assert row["policy_tokens"] > 0 and row["flops"] > 0
    # budget k is charged what k samples cost: the prompt the server counted, once, plus k mean completions; at
    # k = 8 (the whole pool) that is exactly what the one request of 8 samples cost
    for row in rows:
        want = [r["ledger"]["prompt_tokens"] + row["k"] * sum(r["pool"]["completion_tokens"]) / 8 for r in records]
        assert row["policy_tokens"] == pytest.approx(sum(want) / len(want), rel=1e-12)
    for r in records:
        assert r["by_k"]["policy_tokens"][-1] == pytest.approx(r["ledger"]["policy_tokens"], rel=1e-12)
    assert summary["versions"]["vllm_server"] and summary["checkpoint_hash"]
    assert summary["config"]["strategy"]["budget"] == 8          # config as plain fields


def test_same_seed_same_pool_and_resume_does_no_new_work(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    run(config("n_problems=3"), a)
    run(config("n_problems=3"), b)
    def texts(d):       # records land in completion order; compare them by problem
        return {r["problem_id"]: r["pool"]["text"] for r in read_records(d / "records.jsonl")}

    assert texts(a) == texts(b) and len(texts(a)) == 3
    # a killed run leaves at most a torn last line; a rerun repairs it and finishes only the missing problems
    lines = (a / "records.jsonl").read_text().splitlines()
    (a / "records.jsonl").write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    summary = run(config("n_problems=3"), a)
    assert summary["n_problems"] == 3 and len(read_records(a / "records.jsonl")) == 3
    assert texts(a) == texts(b)


def test_cli_multirun_reuses_one_warm_server(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["search.run", "-m", *SMALL, "n_problems=3",
                                      "verifier=outcome_oracle,random", f"hydra.sweep.dir={tmp_path}"])
    def policy_servers():                      # other tests of the session may have started the PRM's server
        return {id(s) for k, s in server_mod._registry.items() if k[0].endswith("tiny/policy")}

    before = policy_servers()
    main()                                     # returns normally when every job succeeded
    after = policy_servers()
    assert len(after) == 1 and (not before or before == after)
    out = capsys.readouterr().out
    assert out.count("coverage") >= 2 and "verifier random" in out and "verifier outcome_oracle" in out
    for job in ("0", "1"):
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        assert summary["n_problems"] == 3
    # the sweep collects into one tidy table: a row per (job, rule, k), config axes as columns
    from search.collect import main as collect_main

    assert collect_main([str(tmp_path)]) == 0
    import pandas as pd

    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 2 * 5 * 4 and set(table["verifier"]) == {"outcome_oracle", "random"}
    assert set(table["selection"]) == {"coverage", "argmax", "majority", "weighted", "accept"}
    from plots.report import write_report

    md, page = write_report(tmp_path)              # figures and the report page, from the table alone
    figures = sorted(tmp_path.glob("*.png"))
    assert {"accuracy_vs_compute_0.png", "accuracy_vs_compute_1.png"} <= {p.name for p in figures}
    assert all(p.stat().st_size > 10_000 for p in figures)
    text = md.read_text()
    for needle in ("## Configuration", "outcome_oracle, random", "## Accuracy at fixed budgets",
                   "![accuracy_vs_compute_1](accuracy_vs_compute_1.png)", "| weighted | verifier=random "):
        assert needle in text, needle
    assert "<img src='accuracy_vs_compute_0.png'" in page.read_text()
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv.columns) == list(table.columns) and len(csv) == len(table)
    assert (csv["accuracy"] - table["accuracy"]).abs().max() < 1e-12
    # at k = 8 (the whole pool) argmax is the grade of each pool's top-scored sample (ties split evenly): read off
    # the random verifier's records directly; the exact oracle's argmax is coverage, the ceiling of any verifier
    oracle, rand = (json.loads((tmp_path / job / "summary.json").read_text())["budgets"] for job in ("0", "1"))

    def top_scored_right(r):
        top = max(r["pool"]["score"])
        picked = [c for c, s in zip(r["pool"]["correct"], r["pool"]["score"]) if s == top]
        return sum(picked) / len(picked)

    rand_records = read_records(tmp_path / "1" / "records.jsonl")
    assert rand[-1]["argmax"] == pytest.approx(sum(map(top_scored_right, rand_records)) / len(rand_records))
    assert oracle[-1]["argmax"] == pytest.approx(oracle[-1]["coverage"])
    assert rand[-1]["argmax"] <= oracle[-1]["argmax"] + 1e-12


@pytest.mark.parametrize("noise", ["flip", "contamination"])
def test_noisy_verifier_curves_match_the_closed_forms_on_real_pools(tmp_path, noise):
    """The measured accuracy-against-k curve lies inside the simultaneous 95% band (bootstrap over problems) around
    the closed form computed from each problem's measured single-sample accuracy."""
    from search.analysis import estimators

    summary = run(config(f"noise={noise}", "n_problems=80", "strategy.budget=16", "budgets=[1,2,4,8,16]"),
                  tmp_path)
    records = read_records(tmp_path / "records.jsonl")
    rules = ["argmax", "accept"]          # the Gaussian families' accept rule is flip noise at derived rates
    for rule in rules:
        measured = [r["by_k"][rule] for r in records]
        curve = [sum(col) / len(records) for col in zip(*(r["by_k"][f"{rule}_closed_form"] for r in records))]
        lo, hi = estimators.simultaneous_band(measured, seed=0)
        assert all(a - 1e-12 <= c <= b + 1e-12 for a, c, b in zip(lo, curve, hi)), (rule, lo, curve, hi)
        # the summary carries the same check for tables and reports: the band and the averaged closed form
        for row, c in zip(summary["budgets"], curve):
            assert row[f"{rule}_closed_form"] == pytest.approx(c)
            assert row[f"{rule}_band_lo"] - 1e-12 <= c <= row[f"{rule}_band_hi"] + 1e-12
    from plots.report import closed_form_check
    from search.analysis.tables import collect

    check = closed_form_check(collect(tmp_path))
    assert list(check["rule"]) == rules and (check["inside band at every k"] == "yes").all()
    assert (check["paired test joint p"] > 0.01).all(), check      # the closed form given each pool, paired test


def test_rescoring_a_cached_pool_sends_no_generation_request(tmp_path):
    cache = f"cache_path={tmp_path / 'cache.sqlite'}"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = run(config(cache, "n_problems=4"), tmp_path / "a")
    again = run(config(cache, "n_problems=4", "noise=flip", "verifier=random"), tmp_path / "b")
    assert first["generation_requests"] == 4 and first["cache_hits"] == 0
    assert again["generation_requests"] == 0 and again["cache_hits"] == 4
    # the ledger still charges each cached pool what it cost when it was generated
    assert again["ledger_totals"]["completion_tokens"] == first["ledger_totals"]["completion_tokens"]
    assert [r["policy_tokens"] for r in again["budgets"]] == [r["policy_tokens"] for r in first["budgets"]]


def test_an_interrupted_sweep_resumes_to_exactly_the_uninterrupted_table(tmp_path, monkeypatch):
    """A kill leaves whole record lines, at most one torn last line, and jobs without summary.json; running the
    sweep again into the same directory must give the very table an uninterrupted run gives."""
    import pandas as pd

    from search.analysis.tables import collect

    def sweep(sweep_dir):
        monkeypatch.setattr(sys, "argv", ["search.run", "-m", *SMALL, "noise=flip", "noise.fpr=0.1,0.3",
                                          f"cache_path={tmp_path / 'cache.sqlite'}", f"hydra.sweep.dir={sweep_dir}"])
        main()

    sweep(tmp_path / "clean")
    sweep(tmp_path / "killed")
    killed = tmp_path / "killed"
    (killed / "1" / "summary.json").unlink()                          # job 1 never finished
    records = (killed / "1" / "records.jsonl").read_text().splitlines()
    (killed / "1" / "records.jsonl").write_text("\n".join(records[:2]) + "\n" + records[2][:40])   # torn line
    sweep(killed)
    # how a job ran (its wall time, what it asked the server for) differs after a kill; what it measured must not
    how_it_ran = ["job_wall_s", "generation_requests", "generated_tokens", "cache_hits"]
    clean, resumed = (collect(d).drop(columns=how_it_ran) for d in (tmp_path / "clean", killed))
    assert len(resumed) == len(clean) == 2 * 5 * 4
    pd.testing.assert_frame_equal(clean, resumed)
    assert len((killed / "1" / "records.jsonl").read_text().splitlines()) == 6     # nothing duplicated
