"""The verifier contract, as checks any verifier can be run against: built-in or from another package.

    lab check-verifier verifier=plugin verifier.name=calculator                  # an entry-point plug-in
    lab check-verifier hydra.searchpath=[pkg://my_package.conf] verifier=my_verifier
    lab check-verifier verifier=my_verifier verifier.noise=0,0.3 verifier.seed=0,1   # a grid: every combination
    lab check-verifier verifier=plugin verifier.name=mine +verifier.noise=0,0.3      # the entry-point route: +
    lab check-verifier verifier=process_oracle noise=flip noise.fpr=0.2              # under a noise wrapper
    python -m verifiers.contract ...                                                 # the same

    from verifiers.contract import check_verifier          # in a plug-in's own tests
    check_verifier(lambda: MyVerifier(task=ArithTask()))   # raises ContractError naming the broken rule

The probe is the tiny arithmetic task's problems with hand-made candidates that need no policy server (``CASES``):
the reference solution, the same with one step wrong, a partial solution, a solution that never gives an answer, an
empty one, one cut at max_tokens, one whose step is free text, and (rule ``long_text``) one of ``LONG_CHARS``
characters. The rules (``CHECKS``), each failure one ``FAIL`` line naming the rule, the grid point, the problem, the
candidate and the fix:

- ``protocol``: ``kind`` is ``outcome`` or ``process``; ``n_params`` is an int >= 0; ``score`` is callable.
- ``raises``: ``score`` returns on every probe case (an exception is traced to the candidate that causes it).
- ``shapes``: a ``Scores`` with one score tuple per candidate, in order; one score for an outcome verifier; one per
  step for a process verifier (one for a candidate without steps).
- ``ranges``: every score is a finite float in [0, 1]; ``tokens`` is an int >= 0.
- ``empty``: scoring no candidates returns no score tuples.
- ``long_text``: a very long candidate is scored within the contract (a served model must cut what exceeds its
  context, not fail).
- ``determinism``: the same call twice, and the same call on a second instance built the same way (same seed), give
  the same scores.
- ``no_mutation``: the problem and the candidate list are unchanged after scoring.
- ``processes`` (command line only): two fresh processes with different hash seeds give the same scores at every grid
  point, which catches seeding from ``hash()`` (salted per process) and from the global ``random`` state.

The grid is every combination of the values given on the command line (Hydra's sweep syntax, ``key=a,b``) and of a
verifier YAML's ``_check_grid_`` map (``_check_grid_: {noise: [0.0, 0.3]}``); a mistake that shows only away from the
defaults (unclipped noise, say) is caught there.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from search.contracts import Candidate, LabError, Problem, ScoreError, Scores, Verifier, check_scores

CHECKS = ("protocol", "raises", "shapes", "ranges", "empty", "long_text", "determinism", "no_mutation")
"""The rules ``check_verifier`` runs, in order (the command line adds ``processes``)."""
LONG_CHARS = 6000
"""Length of the ``long_text`` probe candidate, in characters (far beyond the tiny world's 128-token completions)."""


class ContractError(AssertionError):
    """A verifier broke a rule of the contract; the message names the rule, the candidate and the fix."""

    def __init__(self, message: str, rule: str = "", detail: str = ""):
        super().__init__(message)
        self.rule = rule
        """The broken rule (one of ``CHECKS`` or ``processes``)."""
        self.detail = detail or message
        """The message without the rule: what was seen, where, and the fix."""


@dataclass(frozen=True)
class Case:
    """One kind of probe candidate."""

    label: str
    """What the candidate is, as a FAIL line names it."""
    hint: str
    """What a verifier must do with such a candidate (the fix when it fails on it)."""


CASES = (
    Case("right", "score a right solution"),
    Case("one step wrong", "score a solution whose first result is off by one"),
    Case("first step only, answer None", "score a partial solution (step-wise searches score prefixes; no answer "
                                         "yet)"),
    Case("unfinished: no answer line, answer None", "handle candidate.answer None (no A: line yet)"),
    Case("empty: no steps", "handle candidate.steps == () (give it one score)"),
    Case("cut at max_tokens: answer None", "handle finish_reason 'length' with answer None"),
    Case("free-text step", "handle a step that is not a well-formed a+b=c line"),
)
"""The probe's candidates of each problem, in this order."""
LONG = Case(f"very long text ({LONG_CHARS} characters)", "cut or skip what exceeds the model's context; score it")


def _candidate(task, text: str, finish_reason: str = "stop") -> Candidate:
    answer = None if finish_reason == "length" else task.extract_answer(text)
    return Candidate(steps=task.split_steps(text), answer=answer, text=text, prompt_tokens=10,
                     completion_tokens=len(text), finish_reason=finish_reason)


def probe(task=None, n_problems: int = 3) -> tuple[object, list[tuple[Problem, list[Candidate]]]]:
    """The task (default: the tiny arithmetic task) and, per problem, one candidate of every shape in ``CASES``."""
    from search.tasks.arith import ArithTask

    task = task or ArithTask()
    out = []
    join = task.step_delimiter.join
    for problem in task.problems("eval", n_problems):
        steps = task.split_steps(task.solution(problem))
        wrong = list(steps)
        wrong[0] = wrong[0][:-1] + str((int(wrong[0][-1]) + 1) % 10)        # the first step's result off by one
        cands = [_candidate(task, t) for t in (join(steps), join(wrong), join(steps[:1]), join(steps[:-1]), "")]
        cands.append(_candidate(task, join(steps)[:-1], finish_reason="length"))
        cands.append(_candidate(task, join([steps[0], "so the next value is about fifty", *steps[1:]])))
        out.append((problem, cands))
    return task, out


def long_candidate(task, problem: Problem) -> Candidate:
    """A candidate of about ``LONG_CHARS`` characters: the reference steps, then the first step repeated."""
    steps = list(task.split_steps(task.solution(problem)))
    filler = steps[0]
    body = [*steps[:-1], *[filler] * (LONG_CHARS // (len(filler) + 1)), steps[-1]]
    return _candidate(task, task.step_delimiter.join(body))


def _fail(rule: str, message: str) -> None:
    raise ContractError(f"verifier contract, rule '{rule}': {message}", rule, message)


def _name(v) -> str:
    return getattr(v, "name", type(v).__name__)


def _call(v: Verifier, problem: Problem, cands: Sequence[Candidate], rule: str, labels: Sequence[Case]) -> Scores:
    """``v.score`` on a batch; an exception becomes a FAIL of ``rule`` naming the candidate that raises alone."""
    try:
        return v.score(problem, tuple(cands))
    except Exception as err:  # noqa: BLE001 - any exception of the verifier under test is a finding
        culprit = _culprit(v, problem, cands)
        where = f"problem {problem.id}" + (f", candidate {culprit} ({labels[culprit].label})" if culprit is not None
                                           else f", {len(cands)} candidates together")
        hint = labels[culprit].hint if culprit is not None else "make score() work on a batch of candidates"
        _fail(rule, f"verifier {_name(v)}: {where}: score raised {type(err).__name__}: "
                    f"{' '.join(str(err).split())[:200]}; fix: {hint}")


def _culprit(v: Verifier, problem: Problem, cands: Sequence[Candidate]) -> int | None:
    for i, cand in enumerate(cands):
        try:
            v.score(problem, (cand,))
        except Exception:  # noqa: BLE001
            return i
    return None


def _checked(v: Verifier, problem: Problem, cands: Sequence[Candidate], rule: str, labels: Sequence[Case],
             ranges: bool) -> Scores:
    scores = _call(v, problem, cands, rule, labels)
    try:
        check_scores(_name(v), v.kind, cands, scores, ranges=ranges, problem_id=problem.id)
    except ScoreError as err:
        case = f" (candidate {err.candidate} is the probe's '{labels[err.candidate].label}' case)" \
            if err.candidate is not None else ""
        _fail(rule, f"{err}{case}")
    return scores


def check_protocol(v: Verifier, probes) -> None:
    if getattr(v, "kind", None) not in ("outcome", "process"):
        _fail("protocol", f"kind is {getattr(v, 'kind', None)!r}; fix: set the class attribute kind = 'outcome' "
                          "(one score per candidate) or 'process' (one per step)")
    n = getattr(v, "n_params", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        _fail("protocol", f"n_params is {n!r}; fix: an int >= 0 (0 for a verifier without a model)")
    if not callable(getattr(v, "score", None)):
        _fail("protocol", "score is not callable; fix: define score(self, problem, candidates) -> Scores")


def check_raises(v: Verifier, probes) -> None:
    for problem, cands in probes:
        _call(v, problem, cands, "raises", CASES)


def check_shapes(v: Verifier, probes) -> None:
    for problem, cands in probes:
        _checked(v, problem, cands, "shapes", CASES, ranges=False)


def check_ranges(v: Verifier, probes) -> None:
    for problem, cands in probes:
        _checked(v, problem, cands, "ranges", CASES, ranges=True)


def check_empty(v: Verifier, probes) -> None:
    problem = probes[0][0]
    s = _call(v, problem, [], "empty", CASES)
    if not isinstance(s, Scores) or tuple(s.steps) != ():
        _fail("empty", f"scoring no candidates gave {getattr(s, 'steps', s)!r}; fix: return Scores(steps=()) when "
                       "candidates is empty")


def check_long_text(v: Verifier, probes, task) -> None:
    problem = probes[0][0]
    _checked(v, problem, [long_candidate(task, problem)], "long_text", [LONG], ranges=True)


def _first_difference(a: Scores, b: Scores) -> str:
    for i, (x, y) in enumerate(zip(a.steps, b.steps)):
        if x != y:
            return f"candidate {i} ({CASES[i].label}): {x} then {y}"
    return "the number of score tuples differs"


def check_determinism(v: Verifier, probes, make: Callable[[], Verifier]) -> None:
    twin = make()
    fix = ("draw randomness from a seed argument through search.seeding.derive_seed(seed, problem.id, i, "
           "candidate.text) or hashlib, never from the global random module, numpy's global state or hash()")
    for problem, cands in probes:
        a, b, c = (_call(x, problem, cands, "determinism", CASES) for x in (v, v, twin))
        if a.steps != b.steps:
            _fail("determinism", f"problem {problem.id}: the same call twice gave different scores, "
                                 f"{_first_difference(a, b)}; fix: {fix}")
        if a.steps != c.steps:
            _fail("determinism", f"problem {problem.id}: a second instance built the same way (same seed) gave "
                                 f"different scores, {_first_difference(a, c)}; fix: {fix} (and keep no state "
                                 "between calls)")


def check_no_mutation(v: Verifier, probes) -> None:
    for problem, cands in probes:
        before_p, before_c = copy.deepcopy(problem), copy.deepcopy(list(cands))
        listed = list(cands)
        v.score(problem, listed)
        if problem != before_p or dict(problem.metadata) != dict(before_p.metadata):
            _fail("no_mutation", f"problem {problem.id} changed while it was scored; fix: copy what you change")
        if listed != before_c:
            _fail("no_mutation", f"problem {problem.id}: the candidate list changed while it was scored; fix: never "
                                 "append to, remove from or reorder candidates (make your own list)")


def check_verifier(make: Callable[[], Verifier], task=None, skip: Sequence[str] = ()) -> list[str]:
    """Build a verifier with ``make`` (called twice: a second instance checks determinism) and run every rule of
    ``CHECKS`` but ``skip`` on the probe; returns the rules passed, raises ContractError at the first broken one."""
    task, probes = probe(task)
    try:
        v = make()
    except LabError:
        raise
    except Exception as err:  # noqa: BLE001 - a plug-in's constructor bug is a finding, not a traceback
        _fail("protocol", f"building the verifier raised {type(err).__name__}: {' '.join(str(err).split())[:200]}; "
                          "fix: its __init__(task, **fields of its YAML)")
    rules = {
        "protocol": lambda: check_protocol(v, probes), "raises": lambda: check_raises(v, probes),
        "shapes": lambda: check_shapes(v, probes), "ranges": lambda: check_ranges(v, probes),
        "empty": lambda: check_empty(v, probes), "long_text": lambda: check_long_text(v, probes, task),
        "determinism": lambda: check_determinism(v, probes, make), "no_mutation": lambda: check_no_mutation(v, probes),
    }
    passed = []
    for rule in CHECKS:
        if rule in skip:
            continue
        try:
            rules[rule]()
        except ContractError:
            raise
        except Exception as err:  # noqa: BLE001 - a crash outside score (in __init__ of the twin, say) is a FAIL too
            _fail(rule, f"verifier {_name(v)}: {type(err).__name__}: {' '.join(str(err).split())[:200]}; fix: the "
                        f"verifier must not raise while the {rule} rule runs")
        passed.append(rule)
    return passed


# -- the command line: a grid of parameters, and two processes --------------------------------------------------

def grid(overrides: Sequence[str], yaml_grid: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Split ``overrides`` into the fixed ones and the grid points: every combination of the sweep overrides
    (``key=a,b``) and of the YAML's ``_check_grid_`` (``{field: [values]}``; a field swept or set on the command line wins).
    Returns (fixed overrides, one override list per grid point; ``[[]]`` when nothing is swept)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    fixed, axes, pinned = [], {}, set()
    for ov in OverridesParser.create().parse_overrides(list(overrides)):
        key = ov.get_key_element()
        if ov.is_sweep_override():
            axes[key.lstrip("+")] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
        else:
            fixed.append(ov.input_line)
            pinned.add(key.lstrip("+~"))
    for field, values in (yaml_grid or {}).items():
        key = f"verifier.{field}"
        if key not in axes and key not in pinned:           # a value given on the command line is not swept
            values = values if isinstance(values, (list, tuple)) else [values]
            axes[key] = [f"{key}={json.dumps(v)}" for v in values]
    return fixed, [list(point) for point in itertools.product(*axes.values())] or [[]]


def _yaml_grid(fixed: Sequence[str]) -> dict:
    from omegaconf import OmegaConf

    from search.build import CHECK_GRID, compose

    node = compose(fixed).get("verifier") or {}
    found = node.get(CHECK_GRID) if CHECK_GRID in node else None
    if found is None:
        return {}
    found = OmegaConf.to_container(found, resolve=True)
    if not isinstance(found, dict):
        raise LabError(f"verifier.{CHECK_GRID} is {found!r}: give a map of field -> list of values, e.g. "
                       f"{CHECK_GRID}: {{noise: [0.0, 0.3]}}")
    return found


def _builder(overrides: Sequence[str]):
    from search.build import build_task, build_verifier, compose

    cfg = compose(overrides)
    task = build_task(cfg)
    return task, (lambda: build_verifier(cfg, task)[0])


def probe_scores(points: list[list[str]], fixed: Sequence[str]) -> list[list[list[list[float]]]]:
    """For each grid point, the scores of the whole probe (per problem, per candidate, per step)."""
    out = []
    for point in points:
        task, make = _builder([*fixed, *point])
        v = make()
        _, probes = probe(task)
        out.append([[list(row) for row in v.score(problem, tuple(cands)).steps] for problem, cands in probes])
    return out


def check_processes(fixed: Sequence[str], points: list[list[str]]) -> None:
    """Score the probe at every grid point in two fresh processes with different hash seeds and compare."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for seed in ("1", "2"):
            out = Path(tmp) / f"scores{seed}.json"
            env = dict(os.environ, PYTHONHASHSEED=seed)
            cmd = [sys.executable, "-m", "verifiers.contract", "--emit-scores", str(out),
                   "--points", json.dumps(points), *fixed]
            runs.append((out, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True)))
        results = []
        for out, proc in runs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                last = (err.strip().splitlines() or ["(no output)"])[-1]
                _fail("processes", f"a fresh process could not score the probe ({last}); fix: the verifier must "
                                   "build and score in a new process from its config alone")
            results.append(json.loads(out.read_text()))
    _, probes = probe()
    a, b = results
    for point, pa, pb in zip(points, a, b):
        for (problem, _), rows_a, rows_b in zip(probes, pa, pb):
            for i, (x, y) in enumerate(zip(rows_a, rows_b)):
                if x != y:
                    at = f"[{' '.join(point)}] " if point else ""
                    _fail("processes", f"{at}problem {problem.id}, candidate {i} ({CASES[i].label}): two processes "
                                       f"with different hash seeds scored {x} and {y}; fix: seed from "
                                       "search.seeding.derive_seed(seed, problem.id, ...) or hashlib, never from "
                                       "hash() (salted per process) or the global random state")


def main(argv: list[str] | None = None) -> int:
    """CLI: compose the lab's config with the given overrides and check its verifier (with its noise, if any) at
    every grid point, then across two processes; one FAIL line per broken rule (exit 1), PASS otherwise."""
    from search.cli import explain
    from search.build import CONF_DIR

    ap = argparse.ArgumentParser(prog="lab check-verifier", description=__doc__.split("\n\n")[0],
                                 epilog="other arguments are Hydra overrides: verifier=NAME, verifier.x=a,b (a grid)")
    ap.add_argument("--no-processes", action="store_true", help="skip the two-process determinism check")
    ap.add_argument("--emit-scores", help=argparse.SUPPRESS)
    ap.add_argument("--points", help=argparse.SUPPRESS)
    args, overrides = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        print(f"error: unknown option {bad[0]}: see lab check-verifier --help", file=sys.stderr)
        return 2
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        if args.emit_scores:          # the child of check_processes
            Path(args.emit_scores).write_text(json.dumps(probe_scores(json.loads(args.points), overrides)))
            return 0
        fixed, points = grid(overrides)
        fixed, points = grid(overrides, _yaml_grid(fixed))
        failures, passed = [], []
        for point in points:
            task, make = _builder([*fixed, *point])
            at = f"[{' '.join(point)}] " if point else ""
            try:
                passed = check_verifier(make, task)
            except ContractError as err:
                failures.append(f"{err.rule}: {at}{err.detail}")
        if not failures and not args.no_processes:
            try:
                check_processes(fixed, points)
                passed.append("processes")
            except ContractError as err:
                failures.append(f"{err.rule}: {err.detail}")
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as err:
        print(f"error: {explain(str(err), CONF_DIR)}", file=sys.stderr)
        return 2
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    if failures:
        return 1
    grid_note = (f" at {len(points)} grid points: " + "; ".join(" ".join(p) for p in points)) if points != [[]] else ""
    print(f"PASS {', '.join(passed)}{grid_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
