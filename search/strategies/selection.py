"""How a strategy's final answer is picked from its solutions: the one rule every strategy applies.

    argmax    the solution with the highest score
    majority  the most frequent final answer (solutions without an answer do not vote)
    weighted  the answer with the highest summed score

Ties are broken uniformly at random with the caller's seeded generator (as the pool estimators assume), never by
the order in which solutions happened to finish.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

from search.contracts import LabError

SELECTIONS = ("argmax", "majority", "weighted")
"""The selection rules, by name (a strategy's ``selection`` field)."""


def check_selection(rule: str) -> None:
    """Refuse an unknown rule with one line naming the choices."""
    if rule not in SELECTIONS:
        raise LabError(f"unknown strategy.selection '{rule}': use one of {', '.join(SELECTIONS)}")


def select_answer(answers: Sequence[str | None], scores: Sequence[float], rule: str,
                  rng: random.Random) -> str | None:
    """The final answer among solutions with these answers and scores under ``rule`` (None when there is none),
    ties broken uniformly by ``rng``."""
    if not answers:
        return None
    if rule == "argmax":
        best = max(scores)
        return answers[rng.choice([i for i, s in enumerate(scores) if s == best])]
    weight: Counter = Counter()
    for answer, score in zip(answers, scores):
        if answer is not None:
            weight[answer] += 1.0 if rule == "majority" else score
    if not weight:
        return None
    top = max(weight.values())
    # sums of the same scores in another order differ in the last bits: equal up to rounding is a tie
    return rng.choice([a for a, w in weight.items() if w >= top - 1e-9 * max(1.0, abs(top))])
