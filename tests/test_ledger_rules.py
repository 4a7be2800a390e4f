"""The ledger's accounting rules by hand count (search/ledger.py's docstring is the specification):

    policy_flops        = 2 * policy_params   * (prompt_tokens + completion_tokens)          (compared; cache-less)
    policy_flops_served = 2 * policy_params   * (prompt_tokens - cached_prompt_tokens + completion_tokens)
    verifier_flops      = 2 * verifier_params * verifier_tokens
    flops = policy_flops + verifier_flops;  flops_served = policy_flops_served + verifier_flops

The fakes here report prefix-cached prompt tokens and the verifier has its own parameter count, different from the
policy's, so that charging cached tokens or pricing the verifier like the policy changes a number.
"""
from __future__ import annotations

import pytest

from search.contracts import Candidate, Scores, Usage, SamplingParams
from search.ledger import Ledger, MeteredPolicy, MeteredVerifier
from search.strategies.best_of_k import BestOfK
from search.tasks.arith import ArithTask
from tests.arith_fakes import ArithPolicy

TASK = ArithTask()
PROBLEM = TASK._make(17, (("+", 5), ("*", 3)))          # Q:17+5*3 -> 17+5=22, 22*3=66, A:66


def test_charges_add_up_and_flops_follow_the_formula():
    ledger = Ledger(policy_params=1000, verifier_params=30)
    ledger.charge_generation(Usage(prompt_tokens=100, cached_prompt_tokens=60, completion_tokens=40), n_samples=4)
    ledger.charge_generation(Usage(prompt_tokens=50, cached_prompt_tokens=0, completion_tokens=10), n_samples=1)
    ledger.charge_verifier(5, tokens=200)
    ledger.charge_verifier(2, tokens=7)
    assert (ledger.policy_requests, ledger.policy_samples) == (2, 5)
    assert (ledger.prompt_tokens, ledger.cached_prompt_tokens, ledger.completion_tokens) == (150, 60, 50)
    assert (ledger.verifier_calls, ledger.verifier_candidates, ledger.verifier_tokens) == (2, 7, 207)
    assert ledger.policy_tokens == 200
    assert ledger.policy_flops == 2 * 1000 * 200 == 400_000                 # every prompt token, cached or not
    assert ledger.policy_flops_served == 2 * 1000 * (150 - 60 + 50) == 280_000
    assert ledger.verifier_flops == 2 * 30 * 207 == 12_420                   # the verifier's parameters, not 1000
    assert ledger.flops == 412_420 and ledger.flops_served == 292_420
    d = ledger.as_dict()
    assert d["flops"] == 412_420 and d["flops_served"] == 292_420 and d["verifier_flops"] == 12_420
    assert d["policy_flops"] == 400_000 and d["policy_flops_served"] == 280_000 and d["policy_tokens"] == 200
    assert d["cached_prompt_tokens"] == 60 and d["verifier_params"] == 30 and "_lock" not in d


def test_an_oracle_verifier_costs_nothing_and_a_default_ledger_has_no_verifier():
    ledger = Ledger(policy_params=10)
    ledger.charge_verifier(3, tokens=0)
    assert ledger.verifier_flops == 0 and ledger.flops == 0 and ledger.verifier_candidates == 3


def test_compared_flops_do_not_depend_on_the_prefix_cache_but_served_flops_do():
    cold, warm = Ledger(policy_params=7), Ledger(policy_params=7)
    cold.charge_generation(Usage(40, 0, 12), 2)
    warm.charge_generation(Usage(40, 32, 12), 2)
    assert cold.flops == warm.flops == 2 * 7 * 52
    assert cold.flops_served == 2 * 7 * 52 and warm.flops_served == 2 * 7 * (40 - 32 + 12)


class Reader:
    """An outcome verifier with parameters that reads each candidate's characters as tokens."""

    kind, n_params, name = "outcome", 300, "reader"

    def score(self, problem, candidates):
        return Scores(steps=tuple((0.5,) for _ in candidates), tokens=sum(len(c.text) for c in candidates))


def test_metered_policy_and_verifier_charge_a_cached_prompt_and_the_verifier_by_hand_count():
    fake = ArithPolicy(slip=0.0, cached_share=0.5, n_params=1000)
    ledger = Ledger(policy_params=fake.n_params, verifier_params=Reader.n_params)
    policy, verifier = MeteredPolicy(fake, TASK, ledger), MeteredVerifier(Reader(), ledger)
    sel = BestOfK(budget=3).solve(PROBLEM, policy, verifier)
    solution = "17+5=22\n22*3=66\nA:66"
    assert [c.text for c in sel.candidates] == [solution] * 3
    prompt = len("Q:17+5*3\n") + 1                                 # the fake: a token per character, plus one
    cached = int(prompt * 0.5)
    completion = 3 * (len(solution) + 1)
    assert (ledger.prompt_tokens, ledger.cached_prompt_tokens, ledger.completion_tokens) == (prompt, cached,
                                                                                            completion)
    assert ledger.verifier_tokens == 3 * len(solution) and ledger.verifier_calls == 1
    assert ledger.flops == 2 * 1000 * (prompt + completion) + 2 * 300 * 3 * len(solution)
    assert ledger.flops_served == 2 * 1000 * (prompt - cached + completion) + 2 * 300 * 3 * len(solution)
    # every candidate says what its request cost: the prompt of its request and its own completion
    assert all(c.prompt_tokens == prompt and c.completion_tokens == len(solution) + 1 for c in sel.candidates)


def test_a_step_continuation_is_charged_its_longer_prompt():
    fake = ArithPolicy(slip=0.0, n_params=1000)
    ledger = Ledger(policy_params=1000)
    policy = MeteredPolicy(fake, TASK, ledger)
    [[cand]] = policy.generate(PROBLEM, SamplingParams(n=1, seed=1, stop=("\n",)), prefixes=[("17+5=22",)])
    assert cand.steps == ("17+5=22", "22*3=66") and cand.text == "17+5=22\n22*3=66"
    assert fake.calls[0][0] == "Q:17+5*3\n17+5=22\n"               # the prompt carries the steps so far
    assert ledger.prompt_tokens == len("Q:17+5*3\n17+5=22\n") + 1
    assert ledger.completion_tokens == len("22*3=66") + 1 and cand.completion_tokens == len("22*3=66") + 1


def test_a_completion_cut_at_the_token_cap_has_no_answer_but_is_charged():
    fake = ArithPolicy(slip=0.0)
    ledger = Ledger(policy_params=1)
    [[cand]] = MeteredPolicy(fake, TASK, ledger).generate(PROBLEM, SamplingParams(n=1, seed=1, max_tokens=19))
    assert cand.text == "17+5=22\n22*3=66\nA:6" and cand.finish_reason == "length" and cand.answer is None
    assert ledger.completion_tokens == 19


def test_a_metered_verifier_charges_candidates_not_calls():
    ledger = Ledger(policy_params=1, verifier_params=2)
    cands = [Candidate(steps=("A:1",), answer="1", text="A:1", prompt_tokens=1, completion_tokens=1,
                       finish_reason="stop")] * 4
    scores = MeteredVerifier(Reader(), ledger).score(PROBLEM, cands)
    assert scores.final == (0.5,) * 4
    assert (ledger.verifier_calls, ledger.verifier_candidates, ledger.verifier_tokens) == (1, 4, 12)
    assert ledger.verifier_flops == 2 * 2 * 12


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_fake_policy_reports_the_cached_share_it_is_given(share):
    [gen] = ArithPolicy(cached_share=share).generate(["Q:1+2\n"], SamplingParams(n=2, seed=0))
    assert gen.usage.prompt_tokens == 7 and gen.usage.cached_prompt_tokens == int(7 * share)
