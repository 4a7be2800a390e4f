"""The verifier contract, as checks any verifier can be run against: built-in or from another package.

    python -m verifiers.contract verifier=plugin verifier.name=calculator     # an entry-point plug-in
    python -m verifiers.contract hydra.searchpath=[pkg://my_package.conf] verifier=my_verifier
    python -m verifiers.contract verifier=process_oracle noise=flip noise.fpr=0.2

    from verifiers.contract import check_verifier          # in a plug-in's own tests
    check_verifier(lambda: MyVerifier(task=ArithTask()))   # raises ContractError naming the broken rule

The probe is the tiny arithmetic task's problems with hand-made candidates that need no policy server: the reference
solution, the same with one step wrong, a partial solution, a solution that never gives an answer, and an empty
one. The rules (``CHECKS``):

- ``protocol``: ``kind`` is ``outcome`` or ``process``; ``n_params`` is an int >= 0; ``score`` is callable.
- ``shapes``: one score tuple per candidate, in order; one score for an outcome verifier; one per step for a process
  verifier (one for a candidate without steps).
- ``ranges``: every score is a finite float in [0, 1]; ``tokens`` is an int >= 0.
- ``empty``: scoring no candidates returns no score tuples.
- ``determinism``: the same call twice, and the same call on a second instance built the same way (same seed), give
  the same scores.
- ``no_mutation``: the problem and the candidate list are unchanged after scoring.
"""
from __future__ import annotations

import copy
import math
import sys
from typing import Callable, Sequence

from search.contracts import Candidate, LabError, Problem, Scores, Verifier, check_scores


class ContractError(AssertionError):
    """A verifier broke a rule of the contract; the message names the rule and what was seen."""


def probe(task=None, n_problems: int = 3) -> tuple[object, list[tuple[Problem, list[Candidate]]]]:
    """The task (default: the tiny arithmetic task) and, per problem, candidates of every shape a strategy produces."""
    from search.tasks.arith import ArithTask

    task = task or ArithTask()
    out = []
    for problem in task.problems("eval", n_problems):
        steps = task.split_steps(task.solution(problem))
        wrong = list(steps)
        wrong[0] = wrong[0][:-1] + str((int(wrong[0][-1]) + 1) % 10)        # the first step's result off by one
        texts = [task.step_delimiter.join(steps), task.step_delimiter.join(wrong),
                 task.step_delimiter.join(steps[:1]), task.step_delimiter.join(steps[:-1]), ""]
        cands = [Candidate(steps=task.split_steps(t), answer=task.extract_answer(t), text=t, prompt_tokens=10,
                           completion_tokens=len(t), finish_reason="stop") for t in texts]
        out.append((problem, cands))
    return task, out


def _fail(rule: str, message: str) -> None:
    raise ContractError(f"verifier contract, rule '{rule}': {message}")


def check_protocol(v: Verifier, probes) -> None:
    if getattr(v, "kind", None) not in ("outcome", "process"):
        _fail("protocol", f"kind is {getattr(v, 'kind', None)!r}; it must be 'outcome' or 'process'")
    n = getattr(v, "n_params", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        _fail("protocol", f"n_params is {n!r}; it must be an int >= 0 (0 for a verifier without a model)")
    if not callable(getattr(v, "score", None)):
        _fail("protocol", "score is not callable")


def _scores(v: Verifier, problem: Problem, cands: Sequence[Candidate]) -> Scores:
    out = v.score(problem, tuple(cands))
    if not isinstance(out, Scores):
        _fail("shapes", f"score returned {type(out).__name__}; it must return search.contracts.Scores")
    return out


def check_shapes(v: Verifier, probes) -> None:
    for problem, cands in probes:
        try:
            check_scores(getattr(v, "name", type(v).__name__), v.kind, cands, _scores(v, problem, cands),
                         ranges=False)
        except LabError as err:
            _fail("shapes", str(err))


def check_ranges(v: Verifier, probes) -> None:
    for problem, cands in probes:
        s = _scores(v, problem, cands)
        for row in s.steps:
            for x in row:
                if not isinstance(x, float) or not math.isfinite(x) or not 0.0 <= x <= 1.0:
                    _fail("ranges", f"score {x!r} is not a finite float in [0, 1]")
        if not isinstance(s.tokens, int) or s.tokens < 0:
            _fail("ranges", f"tokens is {s.tokens!r}; it must be an int >= 0")


def check_empty(v: Verifier, probes) -> None:
    problem = probes[0][0]
    s = _scores(v, problem, [])
    if s.steps != ():
        _fail("empty", f"scoring no candidates gave {s.steps!r}; it must give ()")


def check_determinism(v: Verifier, probes, make: Callable[[], Verifier]) -> None:
    twin = make()
    for problem, cands in probes:
        a, b, c = _scores(v, problem, cands), _scores(v, problem, cands), _scores(twin, problem, cands)
        if a.steps != b.steps:
            _fail("determinism", "the same call twice gave different scores")
        if a.steps != c.steps:
            _fail("determinism", "a second instance built the same way (same seed) gave different scores")


def check_no_mutation(v: Verifier, probes) -> None:
    for problem, cands in probes:
        before_p, before_c = copy.deepcopy(problem), copy.deepcopy(list(cands))
        listed = list(cands)
        v.score(problem, listed)
        if problem != before_p or dict(problem.metadata) != dict(before_p.metadata):
            _fail("no_mutation", "the problem changed while it was scored")
        if listed != before_c:
            _fail("no_mutation", "the candidate list changed while it was scored")


CHECKS = ("protocol", "shapes", "ranges", "empty", "determinism", "no_mutation")
"""The rules, in the order they are checked."""


def check_verifier(make: Callable[[], Verifier], task=None) -> list[str]:
    """Build a verifier with ``make`` (called twice: a second instance checks determinism) and run every rule on
    the probe; returns the rules passed, raises ContractError at the first broken one."""
    task, probes = probe(task)
    v = make()
    check_protocol(v, probes)
    check_shapes(v, probes)
    check_ranges(v, probes)
    check_empty(v, probes)
    check_determinism(v, probes, make)
    check_no_mutation(v, probes)
    return list(CHECKS)


def main(argv: list[str] | None = None) -> int:
    """CLI: compose the lab's config with the given overrides and check its verifier (with its noise, if any)."""
    from search.build import build_task, build_verifier
    from search.cli import composed

    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = composed(overrides)
    except SystemExit as done:         # a composition error, already printed as one line
        return int(done.code)

    task = build_task(cfg)

    def make():
        return build_verifier(cfg, task)[0]

    try:
        passed = check_verifier(make, task)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ContractError as err:
        print(f"FAIL {err}", file=sys.stderr)
        return 1
    print(f"PASS {', '.join(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
