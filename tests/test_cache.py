"""The generation cache: hits replace requests, keys separate what differs, and a kill mid-write corrupts nothing."""
import sqlite3
import subprocess
import sys
import time
from dataclasses import fields, replace

from search.serving.cache import CachedPolicy, GenerationCache, cache_key
from search.contracts import SamplingParams
from tests.fakes import ScriptedPolicy

SCRIPT = {"Q:1+1\n": [("1+1=2\nA:2", 3), ("1+1=3\nA:3", 1)], "Q:2+2\n": [("2+2=4\nA:4", 1)]}


def test_second_call_is_served_from_disk_with_the_same_usage(tmp_path):
    inner = ScriptedPolicy(SCRIPT)
    policy = CachedPolicy(inner, GenerationCache(tmp_path / "c.sqlite"))
    params = SamplingParams(n=4, seed=9)
    first = policy.generate(list(SCRIPT), params)
    assert policy.misses == 2 and policy.hits == 0 and len(inner.calls) == 2
    reopened = CachedPolicy(inner, GenerationCache(tmp_path / "c.sqlite"))   # another job of the sweep
    assert reopened.generate(list(SCRIPT), params) == first
    assert reopened.hits == 2 and reopened.misses == 0 and len(inner.calls) == 2
    reopened.generate(["Q:1+1\n"], SamplingParams(n=4, seed=10))               # a new seed is a new generation
    assert reopened.misses == 1 and len(inner.calls) == 3


def test_key_covers_model_prompt_and_every_sampling_parameter():
    base_params = SamplingParams(n=4, temperature=1.0, top_p=1.0, max_tokens=128, stop=(), seed=1)
    base = cache_key("m@1", "Q:1+1\n", base_params)
    assert cache_key("m@1", "Q:1+1\n", SamplingParams(n=4, seed=1)) == base          # a key is a function of values
    assert cache_key("m@2", "Q:1+1\n", base_params) != base
    assert cache_key("m@1", "Q:1+2\n", base_params) != base
    # one changed value per field of SamplingParams: a field the key left out would serve a generation made with
    # another value (96 tokens cut short, another nucleus) as if it were this one
    changed = {"n": 8, "temperature": 0.5, "top_p": 0.9, "max_tokens": 96, "stop": ("\n",), "seed": 2}
    assert set(changed) == {f.name for f in fields(SamplingParams)}, "a new sampling field needs a line here"
    for name, value in changed.items():
        assert cache_key("m@1", "Q:1+1\n", replace(base_params, **{name: value})) != base, name


def test_a_hit_needs_every_sampling_parameter_to_match(tmp_path):
    inner = ScriptedPolicy(SCRIPT)
    policy = CachedPolicy(inner, GenerationCache(tmp_path / "c.sqlite"))
    params = SamplingParams(n=2, seed=9, max_tokens=128, top_p=1.0)
    policy.generate(["Q:1+1\n"], params)
    for other in (replace(params, max_tokens=96), replace(params, top_p=0.5), replace(params, stop=("\n",))):
        policy.generate(["Q:1+1\n"], other)
    assert policy.hits == 0 and policy.misses == 4 and len(inner.calls) == 4 and len(policy.cache) == 4
    policy.generate(["Q:1+1\n"], replace(params, max_tokens=96))
    assert policy.hits == 1 and len(inner.calls) == 4


def test_a_batch_of_hits_and_misses_keeps_the_order_of_its_prompts(tmp_path):
    inner = ScriptedPolicy(SCRIPT)
    policy = CachedPolicy(inner, GenerationCache(tmp_path / "c.sqlite"))
    params = SamplingParams(n=3, seed=4)
    [second] = policy.generate(["Q:2+2\n"], params)
    both = policy.generate(["Q:1+1\n", "Q:2+2\n", "Q:1+1\n"], [params, params, SamplingParams(n=3)])
    assert both[1] == second and policy.hits == 1 and policy.misses == 3
    assert {c.text for c in both[0].completions} <= {"1+1=2\nA:2", "1+1=3\nA:3"}
    assert policy.generated_tokens == sum(g.usage.completion_tokens for g in (second, both[0], both[2]))


def test_unseeded_requests_are_not_cached(tmp_path):
    policy = CachedPolicy(ScriptedPolicy(SCRIPT), GenerationCache(tmp_path / "c.sqlite"))
    policy.generate(["Q:1+1\n"], SamplingParams(n=2))
    assert len(policy.cache) == 0 and policy.misses == 1


WRITER = """
import sys
from search.serving.cache import GenerationCache
from search.contracts import Completion, Generation, Usage
cache = GenerationCache(sys.argv[1])
gen = Generation(tuple(Completion("x" * 200, 200, "stop") for _ in range(64)), Usage(10, 0, 12800))
i = 0
while True:
    cache.put_many({f"{i}-{j}": gen for j in range(50)}, "m")
    i += 1
"""


def test_a_writer_killed_mid_transaction_leaves_a_consistent_database(tmp_path):
    path = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    # no deadline: a busy machine may take long to write 500 entries; pytest's timeout ends a writer that hangs
    while not path.exists() or len(GenerationCache(path)) < 500:
        assert proc.poll() is None, "the writer died on its own"
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count = db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert count >= 500 and count % 50 == 0          # whole transactions only
    assert len(GenerationCache(path).get_many(["0-0"])["0-0"].completions) == 64


def test_keys_are_stable_across_versions_of_the_lab():
    """A cache written by an earlier version must keep hitting: the key is the sha256 of this exact JSON (keys
    sorted), written out here by hand."""
    import hashlib

    payload = ('{"max_tokens": 128, "model": "m@1", "n": 4, "prompt": "Q:1+1\\n", "seed": 1, "stop": [], '
               '"temperature": 1.0, "top_p": 1.0}')
    assert cache_key("m@1", "Q:1+1\n", SamplingParams(n=4, seed=1)) == hashlib.sha256(payload.encode()).hexdigest()


def test_two_models_sharing_one_cache_file_never_serve_each_other(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    a_inner, b_inner = ScriptedPolicy(SCRIPT), ScriptedPolicy(SCRIPT)
    b_inner.model_id = "other@test"
    a, b = CachedPolicy(a_inner, cache), CachedPolicy(b_inner, cache)
    params = SamplingParams(n=2, seed=3)
    a.generate(["Q:1+1\n"], params)
    b.generate(["Q:1+1\n"], params)
    assert (a.misses, b.misses, b.hits, len(b_inner.calls)) == (1, 1, 0, 1) and len(cache) == 2
    # hits add up over calls, and the wrapper answers for the policy's own attributes
    a.generate(["Q:1+1\n"], params)
    a.generate(["Q:1+1\n", "Q:2+2\n"], params)
    assert (a.hits, a.misses) == (2, 2)
    assert a.n_params == 1000 and a.model_id == "scripted@test" and a.script is a_inner.script
