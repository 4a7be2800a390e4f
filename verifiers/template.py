"""Start a verifier plug-in: a package of your own, with both ways in, that passes the contract as written.

    lab new-verifier my_check                    # writes ./my_check/
    lab new-verifier my_check --dir ~/src        # writes ~/src/my_check/
    python -m verifiers.template my_check        # the same

The package (``docs/plugins.md`` walks through every file):

    my_check/pyproject.toml                      the entry point (verifier=plugin verifier.name=my_check) and the
                                                 package-data line that ships the YAML in a normal (non -e) install
    my_check/my_check/verifier.py                the class, typed against search.contracts.Verifier
    my_check/my_check/conf/verifier/my_check.yaml   the _target_ route (hydra.searchpath=[pkg://my_check.conf]
                                                 verifier=my_check): every field documented, and the grid the
                                                 contract checker runs over
    my_check/tests/test_my_check.py              the contract on both routes, and what the verifier must score

As written it is a process verifier that checks each ``a+b=c`` step of the arithmetic task by doing the arithmetic
and the ``A:n`` line against the last result: replace ``step_ok`` with your own judgement and keep the rest.
"""
from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
import sys
from pathlib import Path

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""A verifier name: a lower-case Python identifier (it is the package, the entry point and the YAML name)."""

PYPROJECT = '''\
# {name}: a verifier plug-in for the verifier scaling lab. Two ways in, both declared here:
#   by entry point:      lab run verifier=plugin verifier.name={name} +verifier.miss_score=0.2
#   by _target_ YAML:    lab run hydra.searchpath=[pkg://{name}.conf] verifier={name} verifier.miss_score=0.2
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A verifier plug-in for the verifier scaling lab"
requires-python = ">=3.10"
dependencies = []      # the lab is the host: install this next to it (pip install ./{name})

[project.entry-points."verifier_lab.verifiers"]
{name} = "{name}.verifier:{cls}"

[tool.setuptools.packages.find]
include = ["{name}*"]

# Without this line a normal `pip install .` leaves the YAML out, and verifier={name} is unknown to the lab.
[tool.setuptools.package-data]
{name} = ["conf/verifier/*.yaml"]
'''

INIT = '''\
"""{name}: a verifier plug-in for the verifier scaling lab (see verifier.py)."""
from {name}.verifier import {cls}

__all__ = ["{cls}"]
'''

VERIFIER = '''\
"""{cls}: a process verifier; the score of step i is the score of the solution up to that step, as a PRM's is.

The lab calls ``{cls}(task=TASK, **fields of conf/verifier/{name}.yaml)`` and then ``score(problem, candidates)``
once per batch of candidates of one problem. What it is given (``search.contracts``):

- ``problem.prompt``: the question as the policy saw it (``Q:17+5*3\\n`` in the arithmetic task);
  ``problem.metadata``: task facts (arithmetic: ``n_ops``, ``n_mul``, ``question``); ``problem.reference`` is the
  answer, for graders and oracles only: a verifier that reads it is an oracle, not a verifier.
- ``candidate.steps``: the solution's lines (arithmetic: ``17+5=22``, ``22*3=66``, then ``A:66``); ``()`` for an
  empty completion. ``candidate.answer``: the final answer, None while unfinished or when cut at max_tokens.
  ``candidate.text``, ``candidate.finish_reason`` (``stop`` or ``length``), token counts.

What it returns: ``Scores(steps=...)`` with one tuple per candidate, in order: one float in [0, 1] per step (one for a
candidate without steps), and ``tokens``, what a model behind it read (0 here). Randomness comes from ``seed``
through ``derive_seed``, never from ``hash()`` (salted per process) or the global ``random`` state.
"""
from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Literal, Sequence

from search.contracts import Candidate, LabError, Problem, Scores, Task, Verifier
from search.seeding import derive_seed

STEP = re.compile(r"^(\\d+)([+\\-*])(\\d+)=(\\d+)$")
ANSWER = re.compile(r"^A:(\\d+)$")


class {cls}:
    """Step i scores 1.0 while every step so far computes correctly (mod ``modulus``) and the answer line repeats
    the last result, else ``miss_score``; ``noise`` adds seeded Gaussian noise, clipped into [0, 1]."""

    kind: Literal["outcome", "process"] = "process"
    """``process``: one score per step (step-wise searches need it); ``outcome``: one score per candidate."""
    n_params: int = 0
    """Parameters of the model behind the verifier (0: none); the ledger charges 2 x n_params x tokens."""

    def __init__(self, task: Task, miss_score: float = 0.0, noise: float = 0.0, seed: int = 0, modulus: int = 100,
                 name: str = "{name}"):
        if not 0.0 <= miss_score <= 1.0 or noise < 0:          # a config mistake: one line from the lab
            raise LabError(f"{name}: miss_score={{miss_score}} must be in [0, 1] and noise={{noise}} >= 0; fix "
                           f"verifier.miss_score / verifier.noise")
        self.task, self.miss_score, self.noise, self.seed = task, float(miss_score), float(noise), int(seed)
        self.modulus, self.name = int(modulus), name

    def step_ok(self, step: str, last: int | None) -> tuple[bool, int | None]:
        """Whether one step is right given the last result, and the result it leaves. Replace with your own."""
        m = STEP.match(step.strip())
        if m:
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            value = {{"+": a + b, "-": a - b, "*": a * b}}[op] % self.modulus
            return value == c and (last is None or a == last), c
        m = ANSWER.match(step.strip())
        return bool(m) and last is not None and int(m[1]) == last, last

    def _noisy(self, value: float, problem: Problem, i: int, j: int, cand: Candidate) -> float:
        if not self.noise:
            return value
        rng = random.Random(derive_seed(self.seed, problem.id, i, j, cand.text))     # same in every process
        return min(1.0, max(0.0, value + rng.gauss(0.0, self.noise)))

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        rows = []
        for i, cand in enumerate(candidates):
            if not cand.steps:                                   # an empty completion still gets one score
                rows.append((self._noisy(self.miss_score, problem, i, 0, cand),))
                continue
            row, ok, last = [], True, None
            for j, step in enumerate(cand.steps):
                good, last = self.step_ok(step, last)
                ok = ok and good
                row.append(self._noisy(1.0 if ok else self.miss_score, problem, i, j, cand))
            rows.append(tuple(row))
        return Scores(steps=tuple(rows), tokens=0)


if TYPE_CHECKING:       # a type checker (mypy, pyright) proves the class has the lab's Verifier protocol
    _typed: Verifier = {cls}(task=None)  # type: ignore[arg-type]
'''

YAML = '''\
# {name}: chosen with its package's conf folder on Hydra's search path; its fields are set without a +:
#   lab run hydra.searchpath=[pkg://{name}.conf] verifier={name} verifier.miss_score=0.2
#   lab run -m hydra.searchpath=[pkg://{name}.conf] verifier={name} verifier.noise=0,0.3     # a sweep: one column
# By its entry point instead, the lab's plugin YAML has only `name`, so every field takes a +:
#   lab run verifier=plugin verifier.name={name} +verifier.miss_score=0.2
_target_: {name}.verifier.{cls}
miss_score: 0.0     # score of a step once any step so far is wrong, in [0, 1]
noise: 0.0          # standard deviation of Gaussian noise added to every score (clipped into [0, 1]); >= 0
seed: 0             # seed of that noise: the same seed gives the same scores in every process
modulus: 100        # results are taken mod this (the arithmetic task's modulus)
# lab check-verifier checks every combination of these values too (a mistake may show only away from the defaults)
_check_grid_:
  miss_score: [0.0, 0.5]
  noise: [0.0, 0.3]
'''

TEST = '''\
"""{name} keeps the verifier contract by both ways in, at every point of its YAML's grid and across processes,
and scores a wrong step below a right one. Run: pytest tests/ (the lab and this package installed)."""
from search.tasks.arith import ArithTask
from verifiers.contract import main as check_verifier, probe

from {name} import {cls}


def test_the_yaml_route_keeps_the_contract():
    assert check_verifier(["hydra.searchpath=[pkg://{name}.conf]", "verifier={name}"]) == 0


def test_the_entry_point_route_keeps_the_contract():
    assert check_verifier(["verifier=plugin", "verifier.name={name}", "+verifier.noise=0,0.3"]) == 0


def test_a_wrong_step_scores_below_the_right_solution():
    task, probes = probe(ArithTask())
    problem, (right, wrong, *_) = probes[0]
    scores = {cls}(task, miss_score=0.25).score(problem, [right, wrong])
    assert scores.final == (1.0, 0.25)
'''


def write_package(name: str, parent: Path) -> Path:
    """Write the plug-in package ``name`` into ``parent / name``; returns that directory. Raises ValueError naming
    the problem and the fix for a bad name or an existing directory."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(f"verifier name '{name}' must be a lower-case Python identifier (letters, digits, _; "
                         f"e.g. my_check): it names the package, the entry point and the YAML")
    if importlib.util.find_spec(name) is not None:
        raise ValueError(f"'{name}' is already an importable module here, and the plug-in's package would shadow "
                         f"it or be shadowed: choose another name")
    root = parent / name
    if root.exists():
        raise ValueError(f"{root} already exists: choose another --dir or name, or remove it")
    cls = "".join(part.capitalize() for part in name.split("_") if part) + "Verifier"
    fields = {"name": name, "dist": name.replace("_", "-"), "cls": cls}
    files = {
        "pyproject.toml": PYPROJECT, f"{name}/__init__.py": INIT, f"{name}/verifier.py": VERIFIER,
        f"{name}/conf/__init__.py": "", f"{name}/conf/verifier/{name}.yaml": YAML, f"tests/test_{name}.py": TEST,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**fields))
    return root


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    ap = argparse.ArgumentParser(prog="lab new-verifier", description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="the verifier's name: package, entry point and YAML (a lower-case identifier)")
    ap.add_argument("--dir", type=Path, default=Path("."), help="where to create the package folder (default: .)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.dir.is_dir():
        print(f"error: --dir {args.dir} is not a directory: create it first or choose another", file=sys.stderr)
        return 2
    try:
        root = write_package(args.name, args.dir)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.name
    print(f"wrote {root}: package {name}, entry point {name}, conf/verifier/{name}.yaml, tests/test_{name}.py\n"
          f"next:\n"
          f"  pip install {root}          (a normal install ships the YAML; -e works too)\n"
          f"  lab check-verifier hydra.searchpath=[pkg://{name}.conf] verifier={name}\n"
          f"  lab check-verifier verifier=plugin verifier.name={name}\n"
          f"  pytest {root / 'tests'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
