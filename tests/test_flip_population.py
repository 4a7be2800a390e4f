"""The flip family's population closed forms (``verifiers.noise.predict`` for flip noise on an exact base verifier)
against exact enumeration of every outcome of k samples: each sample is right with chance p and accepted with chance
TPR if right, FPR if wrong, so its type is one of four and a k-subset is a multinomial draw over them."""
from __future__ import annotations

import math
from itertools import product

import pytest

from verifiers.noise import predict


def enumerate_flip(p, tpr, fpr, k, fp_cost):
    """Argmax (uniform among accepted, else uniform among all), accept-or-abstain (uniform among accepted, abstain
    if none), abstention, and the accept rule's reward, summed over the multinomial counts of the four types."""
    probs = [p * tpr, p * (1 - tpr), (1 - p) * fpr, (1 - p) * (1 - fpr)]   # right+acc, right+rej, wrong+acc, ...
    argmax = accept = abstain = reward = 0.0
    for n1, n2, n3 in product(range(k + 1), repeat=3):
        n4 = k - n1 - n2 - n3
        if n4 < 0:
            continue
        counts = (n1, n2, n3, n4)
        w = math.factorial(k) / math.prod(math.factorial(x) for x in counts)
        w *= math.prod(q ** x for q, x in zip(probs, counts))
        if n1 + n3:
            argmax += w * n1 / (n1 + n3)
            accept += w * n1 / (n1 + n3)
            reward += w * (n1 - fp_cost * n3) / (n1 + n3)
        else:
            argmax += w * n2 / k
            abstain += w
    return {"argmax": argmax, "accept": accept, "abstain": abstain, "accept_reward": reward}


@pytest.mark.parametrize("p, tpr, fpr, fp_cost", [(0.3, 0.8, 0.2, 0.0), (0.6, 0.5, 0.5, 1.0), (0.1, 0.95, 0.05, 4.0),
                                                  (0.5, 1.0, 0.0, 2.0), (0.8, 0.3, 0.7, 0.5)])
def test_population_forms_equal_enumeration(p, tpr, fpr, fp_cost):
    ks = [1, 2, 3, 5, 8]
    got = predict({"noise": "flip", "tpr": tpr, "fpr": fpr}, p, ks, fp_cost)
    assert set(got) == {"argmax", "accept", "abstain", "accept_reward"}
    for i, k in enumerate(ks):
        want = enumerate_flip(p, tpr, fpr, k, fp_cost)
        for rule, value in want.items():
            assert got[rule][i] == pytest.approx(value, abs=1e-12), (rule, k)


def test_a_verifier_that_accepts_nothing_always_abstains_and_argmax_is_pass_at_one():
    got = predict({"noise": "flip", "tpr": 0.0, "fpr": 0.0}, 0.4, [1, 4, 16], 1.0)
    assert got["abstain"] == [1.0, 1.0, 1.0] and got["accept"] == [0.0] * 3 and got["accept_reward"] == [0.0] * 3
    assert got["argmax"] == pytest.approx([0.4] * 3)


def test_no_noise_and_unknown_families_predict_nothing():
    assert predict({"noise": "none"}, 0.5, [1, 2]) == {} and predict({}, 0.5, [1, 2]) == {}
