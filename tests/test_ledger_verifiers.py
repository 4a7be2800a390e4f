"""The ledger charges every token; the metered wrappers enforce the contracts; the first verifiers score right."""
import pytest

from search.contracts import Candidate, LabError, SamplingParams, Scores
from search.ledger import Ledger, MeteredPolicy, MeteredVerifier
from search.strategies.best_of_k import BestOfK
from search.tasks.arith import ArithTask
from tests.fakes import ScriptedPolicy
from verifiers.oracle import OutcomeOracle, ProcessOracle
from verifiers.random import RandomVerifier

TASK = ArithTask()
PROBLEM = TASK._make(17, (("+", 5), ("*", 3)))   # 17+5=22, 22*3=66
RIGHT = "17+5=22\n22*3=66\nA:66"
WRONG = "17+5=22\n22*3=76\nA:76"
BROKEN = "17+5=2"


def cand(text):
    return Candidate(steps=TASK.split_steps(text), answer=TASK.extract_answer(text), text=text, prompt_tokens=1,
                     completion_tokens=len(text), finish_reason="stop")


def test_metered_policy_charges_every_request_and_token():
    policy = ScriptedPolicy({PROBLEM.prompt: [(RIGHT, 1), (WRONG, 1)],
                             PROBLEM.prompt + "17+5=22\n": [("22*3=66\nA:66", 1)]})
    ledger = Ledger(policy_params=policy.n_params)
    metered = MeteredPolicy(policy, TASK, ledger)
    [pool] = metered.generate(PROBLEM, SamplingParams(n=5, seed=3))
    assert len(pool) == 5 and {c.answer for c in pool} <= {"66", "76"}
    [cont] = metered.generate(PROBLEM, SamplingParams(n=2, seed=3), prefixes=[("17+5=22",)])
    assert cont[0].steps == ("17+5=22", "22*3=66", "A:66") and cont[0].text == RIGHT
    assert ledger.policy_requests == 2 and ledger.policy_samples == 7
    assert ledger.prompt_tokens == len(PROBLEM.prompt) + 1 + len(PROBLEM.prompt + "17+5=22\n") + 1
    # the scripted policy's tokens: a character each, plus one for the end of text (counted from the texts, not
    # from what the ledger or the candidates say)
    texts = [c.text for c in pool] + ["22*3=66\nA:66"] * 2
    assert ledger.completion_tokens == sum(len(t) + 1 for t in texts)
    prompt = len(PROBLEM.prompt) + 1 + len(PROBLEM.prompt + "17+5=22\n") + 1
    assert ledger.flops == 2 * 1000 * (prompt + sum(len(t) + 1 for t in texts))
    assert ledger.flops_served == ledger.flops and ledger.verifier_flops == 0   # nothing cached, no verifier


def test_oracles_and_random_verifier_score_as_documented():
    cands = [cand(RIGHT), cand(WRONG), cand(BROKEN), cand("")]
    assert OutcomeOracle(TASK).score(PROBLEM, cands).steps == ((1.0,), (0.0,), (0.0,), (0.0,))
    proc = ProcessOracle(TASK).score(PROBLEM, cands)
    assert proc.steps == ((1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.0,), (0.0,))
    assert proc.final == (1.0, 0.0, 0.0, 0.0)
    r1, r2 = RandomVerifier(TASK, seed=1), RandomVerifier(TASK, seed=2)
    s1 = r1.score(PROBLEM, cands).final
    assert s1 == r1.score(PROBLEM, cands).final and s1 != r2.score(PROBLEM, cands).final
    assert all(0 <= x < 1 for x in s1)


def test_metered_verifier_charges_and_rejects_contract_breaks():
    ledger = Ledger(policy_params=1)
    cands = [cand(RIGHT), cand(WRONG)]
    MeteredVerifier(ProcessOracle(TASK), ledger).score(PROBLEM, cands)
    assert ledger.verifier_calls == 1 and ledger.verifier_candidates == 2

    class Bad:
        kind, n_params, name = "outcome", 0, "bad"

        def __init__(self, scores):
            self.scores = scores

        def score(self, problem, candidates):
            return self.scores

    for bad, msg in [(Scores(steps=((1.0,),)), "1 score tuples for 2"),
                     (Scores(steps=((1.0,), (1.5,))), "outside"),
                     (Scores(steps=((1.0, 0.0), (1.0,))), "candidate 0 .outcome.: 2 scores")]:
        with pytest.raises(LabError, match=msg):
            MeteredVerifier(Bad(bad), Ledger(policy_params=1)).score(PROBLEM, cands)


def test_best_of_k_samples_one_pool_with_a_problem_seed():
    policy = ScriptedPolicy({PROBLEM.prompt: [(RIGHT, 1), (WRONG, 3), (BROKEN, 1)]})
    ledger = Ledger(policy_params=policy.n_params)
    strat = BestOfK(budget=16, selection="majority")
    sel = strat.solve(PROBLEM, MeteredPolicy(policy, TASK, ledger), MeteredVerifier(OutcomeOracle(TASK), ledger))
    assert len(sel.candidates) == 16 and len(policy.calls) == 1 and policy.calls[0][1].n == 16
    assert sel.answer == "76"          # the systematic wrong answer wins the vote
    argmax = BestOfK(budget=16, selection="argmax").solve(
        PROBLEM, MeteredPolicy(policy, TASK, ledger), MeteredVerifier(OutcomeOracle(TASK), ledger))
    assert argmax.answer == "66"
    with pytest.raises(LabError, match="budget"):
        strat.check_budgets([1, 32])
    with pytest.raises(LabError, match="selection"):
        BestOfK(selection="best")
