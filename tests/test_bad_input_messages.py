"""Every knob of the strategies, noise and tasks refuses a bad value with a message that names the field, the value
and the fix, and accepts the edges of its range. The message is the user's whole guide, so its words are tested."""
from __future__ import annotations

import pytest

from search.contracts import LabError
from search.strategies.beam import BeamSearch
from search.strategies.best_of_k import BestOfK
from search.strategies.mcts import MCTS
from search.strategies.particles import ParticleFilter
from search.strategies.selection import select_answer
from search.strategies.stepwise import StepSearch
from search.tasks.arith import ArithTask
from search.tasks.math import MathTask
from verifiers.noise import Flip, ScoreNoise
from verifiers.oracle import OutcomeOracle, ProcessOracle

TASK = ArithTask()


@pytest.mark.parametrize("make, words", [
    (lambda: StepSearch(budget=0), ["strategy.budget=0", "at least 1"]),
    (lambda: BestOfK(budget=0), ["strategy.budget=0", "at least 1"]),
    (lambda: StepSearch(aggregate="median"), ["strategy.aggregate 'median'", "last, min, prod, mean"]),
    (lambda: StepSearch(max_steps=0), ["strategy.max_steps", "at least 1"]),
    (lambda: StepSearch(step_max_tokens=0), ["strategy.step_max_tokens", "at least 1"]),
    (lambda: StepSearch(selection="best"), ["strategy.selection 'best'", "argmax, majority, weighted"]),
    (lambda: BeamSearch(lookahead=-1), ["strategy.lookahead=-1", ">= 0"]),
    (lambda: MCTS(parallel=0), ["strategy.parallel=0", ">= 1"]),
    (lambda: ParticleFilter(temperature_resample=0.0), ["strategy.temperature_resample=0.0", "> 0"]),
    (lambda: StepSearch(budget=4).check_expansions(5), ["strategy.expansions=5", "1..strategy.budget=4"]),
    (lambda: BestOfK(budget=4).check_budgets([2, 8]), ["budgets [2, 8]", "strategy.budget to 8"]),
    (lambda: BestOfK(budget=4).check_budgets([0, 2]), ["budgets [0, 2]", "1..strategy.budget=4"]),
    (lambda: Flip(OutcomeOracle(TASK), tpr=1.5), ["tpr and fpr in [0, 1]", "tpr=1.5"]),
    (lambda: Flip(OutcomeOracle(TASK), fpr=-0.1), ["tpr and fpr in [0, 1]", "fpr=-0.1"]),
    (lambda: ScoreNoise(OutcomeOracle(TASK), sigma_wrong=-1.0), ["sigmas >= 0", "sigma_wrong=-1.0"]),
    (lambda: MathTask("math_sample.jsonl", answer_format="latex"), ["task.answer_format='latex'",
                                                                    "plain, boxed or gsm8k"]),
    (lambda: MathTask("math_sample.jsonl", step_delimiter=""), ["task.step_delimiter is empty", "'\\n\\n'"]),
    (lambda: BeamSearch().check_verifier(OutcomeOracle(TASK)), ["beam_search needs a process verifier",
                                                                "outcome_oracle", "verifier=process_oracle"]),
])
def test_a_bad_value_is_refused_naming_the_field_and_the_fix(make, words):
    with pytest.raises(LabError) as err:
        make()
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_a_verifier_without_a_name_is_named_by_its_class():
    class Anonymous:
        kind = "outcome"

    with pytest.raises(LabError, match="but Anonymous is an outcome verifier"):
        BeamSearch().check_verifier(Anonymous())


def test_the_edges_of_every_range_are_accepted():
    for tpr, fpr in [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0)]:
        Flip(OutcomeOracle(TASK), tpr=tpr, fpr=fpr)
    ScoreNoise(OutcomeOracle(TASK), sigma_right=0.0, sigma_wrong=0.0, eps=1.0)
    StepSearch(budget=1, max_steps=1, step_max_tokens=1)
    StepSearch(budget=4).check_expansions(4)
    StepSearch(budget=4).check_expansions(1)
    BestOfK(budget=4).check_budgets([1, 4])
    BeamSearch(lookahead=0).check_verifier(ProcessOracle(TASK))
    assert select_answer(["1"], [1.0], "argmax", __import__("random").Random(0)) == "1"
