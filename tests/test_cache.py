"""The generation cache: hits replace requests, keys separate what differs, and a kill mid-write corrupts nothing."""
import sqlite3
import subprocess
import sys
import time

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
    base = cache_key("m@1", "Q:1+1\n", SamplingParams(n=4, seed=1))
    for other in [cache_key("m@2", "Q:1+1\n", SamplingParams(n=4, seed=1)),
                  cache_key("m@1", "Q:1+2\n", SamplingParams(n=4, seed=1)),
                  cache_key("m@1", "Q:1+1\n", SamplingParams(n=8, seed=1)),
                  cache_key("m@1", "Q:1+1\n", SamplingParams(n=4, seed=1, temperature=0.5)),
                  cache_key("m@1", "Q:1+1\n", SamplingParams(n=4, seed=1, stop=("\n",)))]:
        assert other != base


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
    deadline = time.time() + 30
    while time.time() < deadline and (not path.exists() or len(GenerationCache(path)) < 500):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count = db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert count >= 500 and count % 50 == 0          # whole transactions only
    assert len(GenerationCache(path).get_many(["0-0"])["0-0"].completions) == 64
