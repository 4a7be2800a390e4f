"""Plug-in development as a workflow: ``lab new-verifier`` writes a package that, installed non-editable into a fresh
virtual environment, passes the contract checker at once and runs through a sweep over one of its parameters by both
routes (the parameter a table column); ``lab offline`` checks and measures a verifier on a finished run's pools with
no server, reproducing the run's own numbers.

The fresh environment is a new venv (no pip, no packages of its own) that sees the lab's environment through a
``.pth`` line, so torch and vLLM are not installed again; the package goes into the new venv only. The runs use the
fake arithmetic policy (tests/conf/policy/arith_fake.yaml), so no server starts.
"""
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from search.analysis.tables import collect
from search.build import compose
from search.engine.runner import run
from search.offline import main as offline_main
from tests.arith_fakes import with_fake_policy
from verifiers.template import main as new_verifier

ROOT = Path(__file__).resolve().parents[1]
TESTS_CONF = f"file://{ROOT / 'tests' / 'conf'}"
NAME = "lab_tpl_check"


def test_new_verifier_refuses_bad_names_and_existing_folders_in_one_line(tmp_path, capsys):
    for argv, said in [(["My-Check", "--dir", str(tmp_path)], "must be a lower-case Python identifier"),
                       (["json", "--dir", str(tmp_path)], "'json' is already an importable module"),
                       (["ok_name", "--dir", str(tmp_path / "nope")], "is not a directory")]:
        assert new_verifier(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1
    assert new_verifier(["ok_name", "--dir", str(tmp_path)]) == 0
    assert new_verifier(["ok_name", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The template package, written and installed (not editable) into a fresh venv; returns (python, package dir,
    work dir)."""
    work = tmp_path_factory.mktemp("plugin")
    assert new_verifier([NAME, "--dir", str(work)]) == 0
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # the lab's environment after the new venv's own site-packages (its .pth files run too: the lab's editable install)
    Path(site, "_lab_host.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(host)))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(work / NAME)], check=True, cwd=work)
    return python, work / NAME, work, Path(site)


def lab(python, *args, cwd):
    return subprocess.run([str(python), "-m", *args], capture_output=True, text=True, cwd=cwd)


def test_the_installed_template_ships_its_yaml_and_is_not_in_the_labs_environment(installed):
    python, pkg, work, site = installed
    assert (site / NAME / "conf" / "verifier" / f"{NAME}.yaml").exists()        # the package-data line works
    assert not (site / f"{NAME}.egg-link").exists() and not list(site.glob(f"__editable__*{NAME}*"))
    out = lab(python, "verifiers.plugins", cwd=work)
    assert f"{NAME} " in out.stdout and f"{NAME}.verifier:LabTplCheckVerifier" in out.stdout
    here = subprocess.run([sys.executable, "-m", "verifiers.plugins"], capture_output=True, text=True, cwd=work)
    assert NAME not in here.stdout                                               # only the fresh venv has it


@pytest.mark.parametrize("route", ["yaml", "entry_point"])
def test_the_installed_template_passes_the_checker_at_once(installed, route):
    python, pkg, work, _ = installed
    chosen = ([f"hydra.searchpath=[pkg://{NAME}.conf]", f"verifier={NAME}"] if route == "yaml"
              else ["verifier=plugin", f"verifier.name={NAME}", "+verifier.noise=0,0.3"])
    out = lab(python, "verifiers.contract", *chosen, cwd=work)
    assert out.returncode == 0, out.stderr
    want = {"yaml": "at 4 grid points: verifier.miss_score=0.0 verifier.noise=0.0;",       # the YAML's grid
            "entry_point": "at 2 grid points: +verifier.noise=0; +verifier.noise=0.3"}[route]
    assert out.stdout.startswith("PASS protocol, raises, shapes, ranges, empty, long_text, determinism, no_mutation, "
                                 "processes") and want in out.stdout


def test_the_templates_own_tests_pass(installed):
    python, pkg, work, _ = installed
    out = lab(python, "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests"), cwd=work)
    assert out.returncode == 0 and "3 passed" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("route", ["yaml", "entry_point"])
def test_the_installed_template_runs_through_a_sweep_over_its_parameter(installed, route, tmp_path):
    python, pkg, work, _ = installed
    if route == "yaml":
        chosen = [f"hydra.searchpath=[pkg://{NAME}.conf,{TESTS_CONF}]", f"verifier={NAME}", "verifier.noise=0,0.3"]
    else:
        chosen = [f"hydra.searchpath=[{TESTS_CONF}]", "verifier=plugin", f"verifier.name={NAME}",
                  "+verifier.noise=0,0.3"]
    out = lab(python, "search.run", "-m", *chosen, "policy=arith_fake", "n_problems=6", "strategy.budget=8",
              "cache_path=null", "bootstrap_resamples=20", "weighted_vote_draws=20", f"hydra.sweep.dir={tmp_path}",
              cwd=ROOT)                                 # cwd: the fake policy is tests.arith_fakes
    assert out.returncode == 0, out.stderr[-2000:]
    table = collect(tmp_path)
    assert set(table["verifier"]) == {NAME} and set(table["job"]) == {"0", "1"}
    assert sorted(set(table["verifier.noise"])) == [0.0, 0.3]                     # the swept field is a column
    argmax = table[(table.selection == "argmax") & (table.k == 8)].set_index("verifier.noise")["accuracy"]
    coverage = table[(table.selection == "coverage") & (table.k == 8)].set_index("verifier.noise")["accuracy"]
    assert argmax[0.0] == coverage[0.0]           # the calculator is exact on the fake policy's slips
    assert coverage[0.3] == coverage[0.0]         # the same pools, and noise never raises argmax above coverage
    assert argmax[0.3] <= argmax[0.0]


# -- offline: a finished run's pools, no server ---------------------------------------------------------------------

SMALL = ["n_problems=12", "strategy.budget=8", "bootstrap_resamples=60", "weighted_vote_draws=60", "concurrency=3"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = run(with_fake_policy(compose([*SMALL, "verifier=random"]), slip=0.3), out)
    return out, summary


def test_offline_reproduces_the_runs_own_best_of_k_table(finished_run, tmp_path, capsys):
    """Re-scoring the stored pools with the verifier the run used gives the run's numbers exactly: the pools, the
    seeds and the estimators are the same code."""
    run_dir, summary = finished_run
    assert offline_main([str(run_dir), "verifier=random", "--resamples", "60", "--out", str(tmp_path)]) == 0
    offline = json.loads((tmp_path / "best_of_k.json").read_text())["budgets"]
    for row, want in zip(offline, summary["budgets"]):
        for rule in ("coverage", "argmax", "majority", "weighted", "accept"):
            assert row[rule] == pytest.approx(want[rule]) and row[f"{rule}_lo"] == pytest.approx(want[f"{rule}_lo"])
    out = capsys.readouterr().out
    assert "random on 12 stored pools" in out and "within-problem AUROC=" in out


def test_offline_measures_within_problem_auroc_and_matched_noise(finished_run, tmp_path):
    run_dir, _ = finished_run
    assert offline_main([str(run_dir), "verifier=plugin", "verifier.name=calculator", "--out", str(tmp_path)]) == 0
    quality = json.loads((tmp_path / "verifier_quality.json").read_text())
    outcome = quality["levels"]["outcome"]
    assert outcome["n"] == 12 * 8 and outcome["within_problem_auroc"] == 1.0     # it catches every fake slip
    assert set(quality["matched_flip"]) == {"outcome", "step"} and "outcome" in quality["matched_scores"]
    assert offline_main([str(run_dir), "verifier=random", "--out", str(tmp_path / "r")]) == 0
    rand = json.loads((tmp_path / "r" / "verifier_quality.json").read_text())["levels"]["outcome"]
    assert 0.3 < rand["within_problem_auroc"] < 0.7                               # chance, not a constant


def test_offline_turns_a_broken_score_on_a_stored_candidate_into_one_fail_line(finished_run, capsys):
    run_dir, _ = finished_run
    conf = f"hydra.searchpath=[{TESTS_CONF}]"
    assert offline_main([str(run_dir), conf, "verifier=faulty", "verifier.noise=0.5", "--out", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL ranges: verifier faulty on problem ") and err.count("\n") == 1
    assert "; fix: clip it" in err and "its text starts '" in err


def test_offline_bad_input_is_one_error_line(tmp_path, capsys):
    assert offline_main([str(tmp_path), "verifier=random"]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path} has no records.jsonl: give the directory of a run "
                                       "(lab run ... hydra.run.dir=DIR)\n")
    assert offline_main([str(tmp_path), "verifier=random", "--threshold", "2"]) == 2
