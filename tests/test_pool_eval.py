"""Pool evaluation (``search.analysis.pool.evaluate_pool``) against brute force over every k-subset, and the compute
charged per budget k against a hand count: the prompt once plus k completions, and the verifier priced with its own
parameter count. Then the same figures through a whole run on the fake arithmetic policy, with a verifier that has
parameters and reads tokens (the oracles have neither, which would hide a verifier priced like the policy).

Every expected value here is computed from the definitions (enumeration of subsets, the fake policy's one token per
character), never by calling the code under test.
"""
from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from search.analysis.pool import evaluate_pool
from search.build import compose
from search.contracts import Scores
from search.engine.runner import run
from tests.arith_fakes import with_fake_policy
from verifiers.oracle import OutcomeOracle

# a pool of 7: a systematic wrong answer (5) with the most votes, the right one (4) with the most score mass, a None
# answer, a tie at the top score and scores on both sides of the accept threshold 0.5
ANSWERS = ["4", "5", "4", None, "5", "5", "7"]
CORRECT = [True, False, True, False, False, False, False]
SCORES = [0.9, 0.3, 0.8, 0.6, 0.2, 0.7, 0.9]
COMPLETION = [10, 12, 9, 30, 11, 14, 8]
N = len(ANSWERS)
KS = list(range(1, N + 1))


def subsets(k):
    return list(combinations(range(N), k))


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def brute(k, fp_cost):
    """Every rule of the pool on every k-subset, literally."""
    out = {}
    subs = subsets(k)
    out["coverage"] = mean(any(CORRECT[i] for i in s) for s in subs)

    def argmax(s):
        top = max(SCORES[i] for i in s)
        return mean(CORRECT[i] for i in s if SCORES[i] == top)
    out["argmax"] = mean(argmax(s) for s in subs)

    def vote(s, weight):
        votes = {}
        for i in s:
            if ANSWERS[i] is not None:
                votes[ANSWERS[i]] = votes.get(ANSWERS[i], 0.0) + weight(i)
        if not votes:
            return 0.0
        top = max(votes.values())
        tied = [a for a, v in votes.items() if abs(v - top) < 1e-12]
        return mean(a == "4" for a in tied)
    out["majority"] = mean(vote(s, lambda i: 1.0) for s in subs)
    out["weighted"] = mean(vote(s, lambda i: SCORES[i]) for s in subs)

    acc = rew = abstain = fp = 0.0
    for s in subs:
        accepted = [i for i in s if SCORES[i] >= 0.5]
        if not accepted:
            abstain += 1
            continue
        right = sum(CORRECT[i] for i in accepted)
        wrong = len(accepted) - right
        acc += right / len(accepted)
        fp += wrong / len(accepted)
        rew += (right - fp_cost * wrong) / len(accepted)
    out.update(accept=acc / len(subs), accept_reward=rew / len(subs), abstain=abstain / len(subs),
               false_positive=fp / len(subs))
    return out


@pytest.mark.parametrize("fp_cost", [0.0, 2.0])
def test_every_rule_of_the_pool_matches_enumeration_of_subsets(fp_cost):
    out = evaluate_pool(ANSWERS, CORRECT, SCORES, KS, prompt_tokens=20, completion_tokens=COMPLETION,
                        verifier_tokens=70, policy_params=1000, verifier_params=50, fp_cost=fp_cost,
                        weighted_draws=4000, seed=3)
    assert out["k"] == KS
    for j, k in enumerate(KS):
        want = brute(k, fp_cost)
        for rule in ("coverage", "argmax", "majority", "accept", "accept_reward", "abstain", "false_positive"):
            assert out[rule][j] == pytest.approx(want[rule], abs=1e-12), (rule, k)
        # weighted vote is a Monte-Carlo average with its standard error (exact at k = n and k = 1)
        se = out["weighted_mc_se"][j]
        assert abs(out["weighted"][j] - want["weighted"]) <= 4 * se + 1e-12, (k, out["weighted"][j], want, se)
    # the three accept outcomes partition every subset: right, accepted-but-wrong, or abstain
    for j in range(N):
        assert out["accept"][j] + out["false_positive"][j] + out["abstain"][j] == pytest.approx(1.0)
    # at k = 1: 2 of 7 samples are rejected (abstain), 3 are accepted and wrong: abstentions are not false positives
    assert out["abstain"][0] == pytest.approx(2 / 7) and out["false_positive"][0] == pytest.approx(3 / 7)


def test_weighted_vote_differs_from_majority_here():
    # 5 has the votes (3 to 2), 4 the score mass (1.7 to 1.2): on the whole pool majority is wrong and weighted right,
    # so a weighted vote that counted votes fails the Monte-Carlo check above
    assert brute(N, 0)["majority"] == 0.0 and brute(N, 0)["weighted"] == 1.0


def test_budget_k_is_charged_the_prompt_once_plus_k_completions():
    P, V, prompt, vtokens = 1000, 50, 20, 70
    out = evaluate_pool(ANSWERS, CORRECT, SCORES, KS, prompt_tokens=prompt, completion_tokens=COMPLETION,
                        verifier_tokens=vtokens, policy_params=P, verifier_params=V, weighted_draws=10)
    mean_c, mean_v = sum(COMPLETION) / N, vtokens / N          # 94 / 7 completion tokens, 10 verifier tokens
    for j, k in enumerate(KS):
        assert out["policy_tokens"][j] == pytest.approx(prompt + k * mean_c, rel=1e-12)
        assert out["verifier_tokens"][j] == pytest.approx(k * mean_v, rel=1e-12)
        assert out["flops"][j] == pytest.approx(2 * P * (prompt + k * mean_c) + 2 * V * k * mean_v, rel=1e-12)
    # the per-k cost is linear in k with slope one mean completion: k = 1 and k = 7 differ by 6 completions only
    assert out["policy_tokens"][-1] - out["policy_tokens"][0] == pytest.approx(6 * mean_c)


def test_the_charge_for_budget_k_does_not_depend_on_the_pool_size():
    small = evaluate_pool(ANSWERS, CORRECT, SCORES, [1, 3], prompt_tokens=20, completion_tokens=COMPLETION,
                          verifier_tokens=70, policy_params=1000, verifier_params=50, weighted_draws=10)
    double = evaluate_pool(ANSWERS * 2, CORRECT * 2, SCORES * 2, [1, 3], prompt_tokens=20,
                           completion_tokens=COMPLETION * 2, verifier_tokens=140, policy_params=1000,
                           verifier_params=50, weighted_draws=10)
    for col in ("policy_tokens", "verifier_tokens", "flops"):
        assert double[col] == pytest.approx(small[col], rel=1e-12), col


def test_a_pool_of_inconsistent_lengths_is_refused():
    with pytest.raises(ValueError, match="same pool"):
        evaluate_pool(["1"], [True, False], [0.5], [1], prompt_tokens=1, completion_tokens=[1], verifier_tokens=0,
                      policy_params=1, verifier_params=0)


# -- through a whole run -------------------------------------------------------------------------------------------
VERIFIER_PARAMS = 5000


class ReadingOracle(OutcomeOracle):
    """The exact outcome oracle with a parameter count and a token bill (one token per character of each candidate
    it reads), as a learned verifier would have."""

    n_params = VERIFIER_PARAMS
    name = "reading_oracle"

    def score(self, problem, candidates):
        exact = super().score(problem, candidates)
        return Scores(steps=exact.steps, tokens=sum(len(c.text) for c in candidates))


def test_a_run_charges_budget_k_and_prices_the_verifier_by_its_own_parameters(tmp_path):
    cfg = with_fake_policy(compose(["n_problems=5", "strategy.budget=8", "bootstrap_resamples=20",
                                    "weighted_vote_draws=20"]), slip=0.3, n_params=1000)
    cfg.verifier = {"_target_": "tests.test_pool_eval.ReadingOracle"}
    summary = run(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    task_prompts = {p.id: p.prompt for p in __import__("search.build", fromlist=["build_task"]).build_task(cfg)
                    .problems("eval", 5)}
    ks = [1, 2, 4, 8]
    for r in records:
        texts = r["pool"]["text"]
        # the fake's tokens: one per character, plus one for the end of text (every sample here stops)
        prompt = len(task_prompts[r["problem_id"]]) + 1
        completions = [len(t) + 1 for t in texts]
        vtokens = sum(len(t) for t in texts)
        led = r["ledger"]
        assert (led["prompt_tokens"], led["completion_tokens"], led["verifier_tokens"]) == (
            prompt, sum(completions), vtokens)
        assert led["verifier_flops"] == 2 * VERIFIER_PARAMS * vtokens
        assert led["flops"] == 2 * 1000 * (prompt + sum(completions)) + 2 * VERIFIER_PARAMS * vtokens
        mean_c, mean_v = np.mean(completions), vtokens / len(texts)
        assert r["by_k"]["k"] == ks
        assert r["by_k"]["policy_tokens"] == pytest.approx([prompt + k * mean_c for k in ks], rel=1e-12)
        assert r["by_k"]["verifier_tokens"] == pytest.approx([k * mean_v for k in ks], rel=1e-12)
        assert r["by_k"]["flops"] == pytest.approx(
            [2 * 1000 * (prompt + k * mean_c) + 2 * VERIFIER_PARAMS * k * mean_v for k in ks], rel=1e-12)
    # the summary's per-k compute is the mean over problems of those figures
    for j, row in enumerate(summary["budgets"]):
        assert row["flops"] == pytest.approx(np.mean([r["by_k"]["flops"][j] for r in records]), rel=1e-12)
    assert summary["ledger_totals"]["verifier_flops"] == 2 * VERIFIER_PARAMS * sum(
        sum(len(t) for t in r["pool"]["text"]) for r in records)
