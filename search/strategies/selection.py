"""How a strategy's final answer is picked from its solutions: the one rule every strategy applies.

    argmax    the solution with the highest score
    majority  the most frequent final answer (solutions without an answer do not vote)
    weighted  the answer with the highest summed score

Ties go to the first in the given order (the pool's order for best-of-k, finishing order for a search).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from search.contracts import LabError

SELECTIONS = ("argmax", "majority", "weighted")
"""The selection rules, by name (a strategy's ``selection`` field)."""


def check_selection(rule: str) -> None:
    """Refuse an unknown rule with one line naming the choices."""
    if rule not in SELECTIONS:
        raise LabError(f"unknown strategy.selection '{rule}': use one of {', '.join(SELECTIONS)}")


def select_answer(answers: Sequence[str | None], scores: Sequence[float], rule: str) -> str | None:
    """The final answer among solutions with these answers and scores under ``rule`` (None when there is none)."""
    if not answers:
        return None
    if rule == "argmax":
        return answers[max(range(len(answers)), key=lambda i: scores[i])]
    weight: Counter = Counter()
    for answer, score in zip(answers, scores):
        if answer is not None:
            weight[answer] += 1.0 if rule == "majority" else score
    return max(weight, key=weight.get) if weight else None
