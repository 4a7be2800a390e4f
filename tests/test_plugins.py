"""Verifiers from outside the lab: the contract suite on every built-in verifier and on the example plug-in package
(tests/plugins/lab_example_verifier, installed into the test environment by setup.sh), and that package run through
a Hydra sweep by both discovery routes (entry point and ``_target_`` on Hydra's search path) without any change to
``search/`` or ``verifiers/``."""
import json
import sys
from importlib.metadata import distribution

import pytest

from search.contracts import LabError
from search.build import build_verifier, compose
from search.run import main
from search.tasks.arith import ArithTask
from verifiers import plugins
from verifiers.contract import CHECKS, ContractError, check_verifier, main as contract_main, probe

TASK = ArithTask()
SEARCHPATH = "hydra.searchpath=[pkg://lab_example_verifier.conf]"


def make(*overrides):
    cfg = compose(overrides)
    return lambda: build_verifier(cfg, TASK)[0]


def test_example_plugin_is_installed_as_its_own_package():
    dist = distribution("lab-example-verifier")
    assert "calculator" in plugins.available() and plugins.available()["calculator"] == "lab_example_verifier:Calculator"
    assert dist.metadata["Name"] == "lab-example-verifier"


@pytest.mark.parametrize("overrides", [
    ["verifier=outcome_oracle"], ["verifier=process_oracle"], ["verifier=random"],
    ["verifier=process_oracle", "noise=flip", "noise.tpr=0.9", "noise.fpr=0.2"],
    ["verifier=outcome_oracle", "noise=gaussian"], ["verifier=process_oracle", "noise=contamination"],
    ["verifier=outcome_oracle", "noise=spread"],
    ["verifier=plugin", "verifier.name=calculator"], [SEARCHPATH, "verifier=calculator"],
], ids=lambda o: " ".join(o))
def test_every_offline_verifier_keeps_the_contract(overrides):
    assert check_verifier(make(*overrides)) == list(CHECKS)


class _Broken:
    kind = "process"
    n_params = 0

    def __init__(self, fault):
        self.fault = fault

    def score(self, problem, candidates):
        from search.contracts import Scores

        if self.fault == "mutate":
            candidates.append(candidates[0]) if isinstance(candidates, list) else None
        rows = []
        for i, c in enumerate(candidates):
            n = max(1, len(c.steps))
            if self.fault == "shape":
                n = 1
            value = {"range": 1.5, "random": __import__("random").random()}.get(self.fault, 0.5)
            rows.append((value,) * n)
        return Scores(steps=tuple(rows))


@pytest.mark.parametrize("fault, rule", [("shape", "shapes"), ("range", "ranges"), ("random", "determinism"),
                                         ("mutate", "no_mutation")])
def test_the_contract_catches_each_broken_rule(fault, rule):
    with pytest.raises(ContractError, match=f"rule '{rule}'"):
        check_verifier(lambda: _Broken(fault))


def test_contract_cli(capsys):
    assert contract_main(["verifier=plugin", "verifier.name=calculator"]) == 0
    assert "PASS protocol" in capsys.readouterr().out
    assert contract_main(["verifier=nosuch"]) == 2
    assert "unknown verifier 'nosuch'" in capsys.readouterr().err
    assert contract_main(["verifier=plugin", "verifier.name=nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no verifier plug-in named 'nosuch'" in err and "installed: calculator" in err


def test_plugin_arguments_and_protocol_errors_are_one_line():
    with pytest.raises(LabError, match=r"does not take these arguments"):
        plugins.load(TASK, "calculator", colour="blue")
    v = plugins.load(TASK, "calculator", miss_score=0.25)
    problem, cands = probe(TASK)[1][0]
    assert v.score(problem, cands[1:2]).steps[0][0] == 0.25          # the first step is wrong


def test_calculator_has_a_real_false_positive_rate():
    """It checks arithmetic, not the plan: a consistent step with an operand the question never had passes."""
    from search.contracts import Candidate

    v = plugins.load(TASK, "calculator")
    problem = next(p for p in TASK.problems("eval", 50) if p.metadata["n_ops"] >= 2)
    first = TASK.split_steps(TASK.solution(problem))[0]
    c = int(first.split("=")[1])
    fake = f"{c}+1={(c + 1) % 100}"
    cand = Candidate(steps=(first, fake), answer=None, text=f"{first}\n{fake}", prompt_tokens=1,
                     completion_tokens=1, finish_reason="stop")
    assert TASK.check_steps(problem, cand.steps) == (True, False)
    assert v.score(problem, [cand]).steps[0] == (1.0, 1.0)


@pytest.mark.server
@pytest.mark.parametrize("route", ["entry_point", "searchpath"])
def test_example_plugin_runs_through_a_sweep(route, tmp_path, monkeypatch):
    chosen = ["verifier=plugin", "verifier.name=calculator"] if route == "entry_point" else [SEARCHPATH,
                                                                                           "verifier=calculator"]
    monkeypatch.setattr(sys, "argv", ["search.run", "-m", *chosen, "strategy=beam_search", "strategy.budget=4,8",
                                      "n_problems=4", "cache_path=null", f"hydra.sweep.dir={tmp_path}"])
    main()
    from search.analysis.tables import collect

    table = collect(tmp_path)
    assert len(table) == 2 and set(table["verifier"]) == {"calculator"} and set(table["k"]) == {4, 8}
    for job in ("0", "1"):
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        assert summary["verifier_kind"] == "process" and summary["n_problems"] == 4
