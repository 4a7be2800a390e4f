"""Scale-out on existing engines: the same 8-job sweep through Hydra's basic launcher, the joblib launcher (two worker
processes) and the submitit launcher (its local executor), all against one shared vLLM server given by URL, collect
into the same table; and the policy client spreads requests over two real vLLM servers with the results of one."""
import sys

import pandas as pd
import pytest

from search.serving import vllm_server as server_mod
from search.serving.checkpoint import SHIPPED
from search.analysis.tables import collect
from search.contracts import SamplingParams
from search.serving.clients import managed_policy, remote_policy
from search.run import main

SWEEP = ["seed=0,1", "verifier=outcome_oracle,random", "strategy.budget=4,8", "n_problems=4", "cache_path=null"]
"""2 x 2 x 2 = 8 jobs."""
MACHINE_COLUMNS = ["job_wall_s", "generation_requests", "generated_tokens", "cache_hits"]
"""Columns that say how a job ran, not what it found."""


@pytest.fixture(scope="module")
def shared_url():
    return managed_policy().base_urls[0]          # the session's warm server, used by URL like a cluster's


def remote(url):
    return ["policy=remote", f"policy.base_urls=[{url}]", "policy.model=tiny-policy", "policy.checkpoint=tiny-policy"]


def sweep(tmp_path, monkeypatch, url, *launcher):
    monkeypatch.setattr(sys, "argv", ["search.run", "-m", *SWEEP, *remote(url), *launcher,
                                      f"hydra.sweep.dir={tmp_path}"])
    main()
    table = collect(tmp_path).drop(columns=MACHINE_COLUMNS + ["job"])
    return table.sort_values(["overrides", "selection", "k"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def basic(tmp_path_factory, shared_url):
    mp = pytest.MonkeyPatch()
    try:
        return sweep(tmp_path_factory.mktemp("basic"), mp, shared_url)
    finally:
        mp.undo()


@pytest.mark.server
@pytest.mark.parametrize("launcher", [["hydra/launcher=local_parallel"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]],
                         ids=["joblib-2-workers", "submitit-local"])
def test_launchers_give_the_basic_launchers_table(launcher, basic, shared_url, tmp_path, monkeypatch):
    table = sweep(tmp_path, monkeypatch, shared_url, *launcher)
    assert table["overrides"].nunique() == 8 and len(table) == len(basic)
    pd.testing.assert_frame_equal(table, basic)
    assert len(list(tmp_path.rglob("summary.json"))) == 8


def test_a_launcher_that_cannot_reach_the_server_stops_in_one_line(tmp_path):
    from tests.test_configs import one_error_line, run_cli

    line = one_error_line(run_cli("-m", "hydra/launcher=local_parallel", *remote("http://127.0.0.1:9"),
                                  "seed=0,1", f"hydra.sweep.dir={tmp_path}"))
    assert "policy server http://127.0.0.1:9 is not reachable" in line and "policy.base_urls" in line


@pytest.fixture(scope="module")
def second_server():
    server = server_mod.ManagedServer(str(SHIPPED["tiny-policy"]), served_model_name="tiny-policy",
                                      max_model_len=256, env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    with server:
        yield server


@pytest.mark.server
def test_requests_spread_over_two_real_servers_with_the_results_of_one(shared_url, second_server):
    prompts = [p.prompt for p in __import__("search.tasks.arith", fromlist=["ArithTask"]).ArithTask().problems(
        "eval", 16)]
    params = [SamplingParams(n=4, seed=100 + i, max_tokens=64) for i in range(len(prompts))]
    one = remote_policy([shared_url], "tiny-policy", checkpoint="tiny-policy")
    other = remote_policy([second_server.base_url], "tiny-policy", checkpoint="tiny-policy")
    two = remote_policy([shared_url, second_server.base_url], "tiny-policy", checkpoint="tiny-policy")
    alone, spread = one.generate(prompts, params), two.generate(prompts, params)
    sent = two.requests_per_replica
    # Both servers did real work. How much each gets depends on which answers faster (fewest requests in flight; the
    # rule itself is pinned down in tests/test_serving_fast.py), so only that each got some is certain here.
    assert sum(sent) == 16 and min(sent) >= 1, sent
    # each replica alone draws the same samples, so the split cannot change a result
    assert [[c.text for c in g.completions] for g in other.generate(prompts, params)] == \
        [[c.text for c in g.completions] for g in alone]
    assert two.model_id == one.model_id == managed_policy().model_id  # same identity: the cache is shared
    # same checkpoint, same seeds: every sample is the same whichever replica drew it
    assert [[c.text for c in g.completions] for g in spread] == [[c.text for c in g.completions] for g in alone]
    assert [g.usage.completion_tokens for g in spread] == [g.usage.completion_tokens for g in alone]
