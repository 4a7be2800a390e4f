"""Verifiers from outside the lab: the contract suite on every built-in verifier and on the example plug-in package
(tests/plugins/lab_example_verifier, installed into the test environment by setup.sh), and that package run through
a Hydra sweep by both discovery routes (entry point and ``_target_`` on Hydra's search path) without any change to
``search/`` or ``verifiers/``."""
import json
from pathlib import Path
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


# -- the mistakes plug-in authors make: each one line from the checker and from the lab ---------------------------

TESTS_CONF = f"hydra.searchpath=[file://{Path(__file__).resolve().parent / 'conf'}]"


@pytest.mark.parametrize("extra, line", [
    (["verifier.fault=raise_unfinished"],
     "FAIL raises: verifier faulty: problem c002e1cd792c, candidate 2 (first step only, answer None): score raised "
     "KeyError: 'confidence'; fix: score a partial solution"),
    (["verifier.fault=flat"], "FAIL shapes: verifier faulty on problem c002e1cd792c: Scores.steps is a flat tuple of "
                              "7 numbers; fix: give one tuple per candidate"),
    (["verifier.fault=count"], "FAIL shapes: verifier faulty on problem c002e1cd792c: 6 score tuples for 7 "
                               "candidates; fix: return one tuple per candidate"),
    (["verifier.fault=nan_unfinished"], "FAIL ranges: verifier faulty on problem c002e1cd792c, candidate 2: score is "
                                        "NaN; fix: give a finite float in [0, 1]"),
    (["verifier.noise=0,0.3"], "FAIL ranges: [verifier.noise=0.3] verifier faulty on problem c002e1cd792c, candidate "
                               "2: score -0.15"),
    (["+verifier._check_grid_={noise:[0,0.3]}"], "FAIL ranges: [verifier.noise=0.3] verifier faulty on problem"),
    (["verifier.fault=global_random", "verifier.noise=0.05"],
     "FAIL determinism: problem c002e1cd792c: the same call twice gave different scores, candidate 0 (right)"),
    (["verifier.fault=hash_seed", "verifier.noise=0.05"],
     "FAIL processes: problem c002e1cd792c, candidate 0 (right): two processes with different hash seeds scored"),
], ids=["raises", "flat", "count", "nan", "grid_cli", "grid_yaml", "global_random", "hash_seed"])
def test_the_checker_turns_each_mistake_into_one_fail_line(extra, line, capsys):
    assert contract_main([TESTS_CONF, "verifier=faulty", *extra]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and out.err.startswith(line), out.err
    assert "; fix: " in out.err and "Traceback" not in out.err


def test_the_checker_passes_the_same_verifier_without_its_mistake_and_names_its_grid(capsys):
    assert contract_main([TESTS_CONF, "verifier=faulty", "verifier.seed=0,1", "verifier.noise=0.05"]) == 0
    assert capsys.readouterr().out == ("PASS protocol, raises, shapes, ranges, empty, long_text, determinism, "
                                       "no_mutation, processes at 2 grid points: verifier.seed=0; verifier.seed=1\n")


def test_a_grid_sweep_of_a_yaml_field_keeps_the_run_identity_and_builds(tmp_path):
    """The YAML's ``_check_grid_`` is the checker's, not the verifier's: it is not passed to the class."""
    from search.build import identity
    from omegaconf import OmegaConf

    cfg = compose([TESTS_CONF, "verifier=faulty", "+verifier._check_grid_={noise:[0,0.3]}"])
    assert build_verifier(cfg, TASK)[0].noise == 0.0
    assert not any("_check_grid_" in k for k in identity(OmegaConf.to_container(cfg, resolve=True)))


@pytest.mark.parametrize("overrides, hint", [
    (["verifier=plugin", "verifier.name=calculator", "verifier.miss_score=0.3"],
     "error: verifier.miss_score is not a field of the chosen verifier config: add it with +verifier.miss_score=VALUE"),
    ([SEARCHPATH, "verifier=calculator", "+verifier.miss_score=0.3"],
     "error: +verifier.miss_score adds a field, but verifier.miss_score is already a field of the chosen config"),
])
def test_a_missing_or_extra_plus_is_explained_by_route(overrides, hint, capsys):
    assert contract_main(overrides) == 2
    err = capsys.readouterr().err
    assert err.startswith(hint) and err.count("\n") == 1 and "search.run --help" not in err


def run_config(*overrides, **fake):
    from tests.arith_fakes import with_fake_policy

    small = ["n_problems=4", "strategy.budget=4", "bootstrap_resamples=20", "weighted_vote_draws=20", "concurrency=1"]
    return with_fake_policy(compose([TESTS_CONF, "verifier=faulty", *small, *overrides]), **({"slip": 0.2} | fake))


THIRD = TASK.problems("eval", 3)[2].id


@pytest.mark.parametrize("fault, message", [
    ("raise_unfinished", rf"verifier faulty raised KeyError: 'confidence' while scoring problem {THIRD} \(4 candidates\): "
                         r"fix its score\(\)"),
    ("nan_unfinished", rf"verifier faulty on problem {THIRD}, candidate 0: score is NaN; fix: give a finite float"),
    ("flat", rf"verifier faulty on problem {THIRD}: Scores.steps is a flat tuple of 4 numbers; fix: give one tuple per "
             "candidate"),
    ("count", rf"verifier faulty on problem {THIRD}: 3 score tuples for 4 candidates"),
])
def test_a_broken_plugin_stops_a_run_with_one_line_and_keeps_finished_records(fault, message, tmp_path):
    from search.engine.runner import run

    with pytest.raises(LabError, match=message):
        run(run_config(f"verifier.fault={fault}", f"verifier.fail_on={THIRD}"), tmp_path)
    done = [json.loads(line)["problem_id"] for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    # the two before it are kept (and the fourth, when the worker had started it before the failure was seen)
    assert done[:2] == [p.id for p in TASK.problems("eval", 2)] and THIRD not in done


def test_a_score_outside_the_range_names_the_problem_and_the_fix(tmp_path):
    from search.engine.runner import run

    with pytest.raises(LabError, match=r"verifier faulty on problem \w+, candidate \d: score -?[\d.]+ is outside "
                                       r"\[0, 1\]; fix: clip it"):
        run(run_config("verifier.noise=0.5"), tmp_path)


def test_the_lab_command_prints_one_error_line_for_an_exception_in_score(tmp_path):
    """Through Hydra's app, the thread pool and the ledger: one ``error:`` line, exit 2, no traceback."""
    import subprocess
    from pathlib import Path as P

    cmd = [sys.executable, "-m", "search.run", TESTS_CONF, "policy=arith_fake", "verifier=faulty",
           "verifier.fault=raise_unfinished", f"verifier.fail_on={THIRD}", "n_problems=4", "strategy.budget=4",
           "concurrency=1", "cache_path=null", f"hydra.run.dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=P(__file__).resolve().parents[1])
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip() and "problems" not in line]
    assert lines == [f"error: verifier faulty raised KeyError: 'confidence' while scoring problem {THIRD} (4 candidates): "
                     "fix its score(); find the candidate with lab check-verifier (its probe) or lab offline RUN_DIR "
                     "(a run's pools)"]
    done = [json.loads(line)["problem_id"] for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert done[:2] == [p.id for p in TASK.problems("eval", 2)] and THIRD not in done


def test_a_field_fixed_on_the_command_line_is_not_swept_by_the_yaml_grid():
    from verifiers.contract import grid

    fixed, points = grid(["verifier.rule=logistic", "+verifier.k=3"], {"rule": ["mean", "vote"], "k": [1], "x": [1, 2]})
    assert fixed == ["verifier.rule=logistic", "+verifier.k=3"]
    assert points == [["verifier.x=1"], ["verifier.x=2"]]
