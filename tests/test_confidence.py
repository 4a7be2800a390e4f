"""Confidence from the policy's own logprobs: recorded by the client, kept by the cache (old keys and entries
unchanged), measured by verifiers/confidence.py, and used by the confidence-filtered vote."""
import math
import subprocess
import sys

import numpy as np
import pytest

from search.analysis.estimators import majority_curve, pass_at_k
from search.analysis.filtered_vote import filtered_vote_at_k
from search.contracts import (Candidate, Completion, Generation, LabError, Problem, SamplingParams, TokenLogprobs,
                              Usage)
from search.serving.cache import CachedPolicy, GenerationCache, _decode, _encode, cache_key
from search.serving.openai_policy import OpenAIPolicy
from verifiers.confidence import Confidence, group_confidence, mean_logprob, self_certainty

LP = TokenLogprobs(token=(-0.1, -0.7, -0.2), top=((-0.1, -2.5, -4.0), (-0.5, -0.7, -3.0), (-0.2, -1.8, -5.0)))


def test_a_request_without_logprobs_keeps_its_key_and_one_with_them_gets_another():
    params = SamplingParams(n=4, seed=1)
    assert cache_key("m@1", "Q", params, None) == cache_key("m@1", "Q", params)
    assert cache_key("m@1", "Q", params, 20) != cache_key("m@1", "Q", params)
    assert cache_key("m@1", "Q", params, 20) != cache_key("m@1", "Q", params, 5)


def test_entries_round_trip_and_old_entries_still_read():
    gen = Generation((Completion("1+1=2\nA:2", 9, "stop", LP), Completion("x", 2, "length")), Usage(3, 0, 11))
    assert _decode(_encode(gen)) == gen
    old = '{"completions": [{"text": "A:2", "completion_tokens": 4, "finish_reason": "stop"}], ' \
          '"usage": {"prompt_tokens": 3, "cached_prompt_tokens": 0, "completion_tokens": 4}}'
    assert _decode(old) == Generation((Completion("A:2", 4, "stop"),), Usage(3, 0, 4))
    # a completion without logprobs is stored exactly as before logprobs existed
    assert '"logprobs"' not in _encode(Generation((Completion("A:2", 4, "stop"),), Usage(3, 0, 4)))


class LogprobPolicy:
    model_id, n_params, logprobs = "lp@test", 10, 20

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        return [Generation((Completion("A:2", 4, "stop", LP),), Usage(1, 0, 4)) for _ in prompts]


def test_the_cache_serves_logprobs_without_generating(tmp_path):
    inner = LogprobPolicy()
    policy = CachedPolicy(inner, GenerationCache(tmp_path / "c.sqlite"))
    first = policy.generate(["Q"], SamplingParams(seed=3))
    again = CachedPolicy(inner, GenerationCache(tmp_path / "c.sqlite")).generate(["Q"], SamplingParams(seed=3))
    assert again == first and again[0].completions[0].logprobs == LP and inner.calls == 1


def test_the_client_asks_for_logprobs_and_reads_them():
    policy = OpenAIPolicy(["http://127.0.0.1:9"], model="m", model_id="m@1", n_params=1, logprobs=2)
    sent = []

    def post(body):
        sent.append(body)
        return {"choices": [{"index": 0, "text": "ab", "finish_reason": "stop", "token_ids": [5, 6],
                             "logprobs": {"tokens": ["a", "b"], "token_logprobs": [-0.1, -3.0],
                                          "top_logprobs": [{"a": -0.1, "c": -2.4}, {"d": -0.2, "e": -1.9, "b": -3.0}]}}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 2}}

    policy._post = post
    [gen] = policy.generate(["Q"], SamplingParams(seed=1))
    policy.close()
    assert sent[0]["logprobs"] == 2
    assert gen.completions[0].logprobs == TokenLogprobs((-0.1, -3.0), ((-0.1, -2.4), (-0.2, -1.9)))


def test_measures_against_direct_computation():
    assert mean_logprob(LP) == pytest.approx(math.exp(-1.0 / 3))
    # the full distribution (top = every token): KL(U || p) averaged over positions
    full = np.log(np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]]))
    lp = TokenLogprobs(tuple(full[:, 0]), tuple(tuple(r) for r in full))
    kl = np.mean([np.sum(np.full(3, 1 / 3) * (np.log(1 / 3) - r)) for r in full])
    assert self_certainty(lp, 3) == pytest.approx(1 - math.exp(-kl))
    # the top 1 of a vocabulary of 3 whose other two tokens share the rest evenly: exact as well
    lp1 = TokenLogprobs((math.log(0.5),), ((math.log(0.5),),))
    kl1 = np.sum(np.full(3, 1 / 3) * (np.log(1 / 3) - np.log([0.5, 0.25, 0.25])))
    assert self_certainty(lp1, 3) == pytest.approx(1 - math.exp(-kl1))
    c = [-np.mean(t) for t in LP.top]
    low = min(np.mean(c[:2]), np.mean(c[1:]))
    assert group_confidence(LP, 2) == pytest.approx(low / (1 + low))
    assert group_confidence(LP, 10) == pytest.approx(np.mean(c) / (1 + np.mean(c)))


def _cand(lp):
    return Candidate(steps=("A:2",), answer="2", text="A:2", prompt_tokens=1, completion_tokens=3,
                     finish_reason="stop", logprobs=lp)


def test_the_verifier_scores_in_range_and_names_a_missing_logprob():
    problem = Problem("p1", "Q", "2")
    for measure in ("mean_logprob", "self_certainty", "group_confidence"):
        s = Confidence(None, measure=measure, vocab_size=23).score(problem, [_cand(LP)])
        assert 0 <= s.final[0] <= 1 and s.tokens == 0
    with pytest.raises(LabError, match="candidate 0 of problem p1 has no logprobs; run the policy with policy.logprobs"):
        Confidence(None).score(problem, [_cand(None)])
    lenient = Confidence(None, strict=False)
    assert lenient.score(problem, [_cand(None)]).final == (0.5,) and lenient.missing == 1
    with pytest.raises(LabError, match="verifier.measure='entropy'"):
        Confidence(None, measure="entropy")


def test_filtered_vote_keeping_all_is_majority_and_keeping_the_best_of_an_oracle_is_coverage():
    answers = ["1", "1", "1", "2", "2", None, "3", "2"]
    correct = [a == "2" for a in answers]
    scores = [0.1, 0.3, 0.2, 0.9, 0.4, 0.5, 0.6, 0.7]
    for k in (1, 3, 5, 8):
        est, se = filtered_vote_at_k(answers, scores, correct, k, 1.0, n_draws=4000, seed=k)
        assert abs(est - majority_curve(answers, correct, [k])[0]) < 4.5 * se + 1e-12
        oracle = [float(x) for x in correct]
        est, se = filtered_vote_at_k(answers, oracle, correct, k, 1 / k, n_draws=4000, seed=k)
        assert abs(est - pass_at_k(8, 3, k)) < 4.5 * se + 1e-12


def test_the_filtered_vote_command_gives_one_error_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "search.confidence_vote", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    assert "has no records.jsonl" in out.stderr
