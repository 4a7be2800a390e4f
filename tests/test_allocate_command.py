"""The allocation command end to end on a pool file the test writes: the report, its figures, the claim that no
generation request was sent (no serving module is even imported), and one error line for each mistake."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.engine.pool_files import PoolSet, write_jsonl
from tests.test_allocation import simulated_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("alloc") / "pools.jsonl"
    write_jsonl(PoolSet(simulated_world(P=40, n=16), 1000, {"v": 10}, "simulated"), path)
    return path


def run(*args):
    return subprocess.run([sys.executable, "-m", "search.lab", "allocate", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_the_report_reads_pools_only(pool_file, tmp_path):
    out = tmp_path / "report"
    probe = ("import sys, runpy; sys.argv = ['lab allocate', %r, '--out', %r, '--splits', '4', '--replicates', "
             "'20', '--draws', '30', '--m', '2', '--bins', '2']\n"
             "from search.allocate import main\nmain()\n"
             "print('IMPORTED', sorted(m for m in sys.modules if m.startswith(('search.serving', 'vllm', 'httpx', "
             "))))") % (str(pool_file), str(out))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "generation requests sent: 0" in done.stdout
    assert "IMPORTED []" in done.stdout
    page = (out / "report.md").read_text()
    assert "**Generation requests sent: 0**" in page
    for name in ("compute_optimal", "by_difficulty", "adaptive_budget", "early_stopping"):
        assert (out / f"{name}.png").stat().st_size > 10_000 and f"({name}.png)" in page
    res = json.loads((out / "allocation.json").read_text())
    assert res["generation_requests"] == 0 and res["n_problems"] == 40
    best = {(r["bin"], r["budget"]): r["best_rule"] for r in res["best_per_oracle_bin"]}
    assert best[(0, 8)] == "argmax:v" and best[(1, 8)] == "majority"
    assert res["rules"] == ["majority", "argmax:v", "weighted:v"]
    kinds = {r["kind"] for r in res["early_stopping"]["rules"]}
    assert kinds == {"adaptive", "esc", "confident", "consensus"}


@pytest.mark.parametrize("args, expected", [
    (["--verifier", "nosuch"], "no scores from verifier 'nosuch'"),
    (["--m", "16"], "--m 16 leaves no sample"),
    (["--cap", "99"], "--cap 99 must lie in 1..16"),
    (["--splits", "0"], "--splits must be >= 1"),
])
def test_mistakes_are_one_line_and_exit_2(pool_file, tmp_path, args, expected):
    done = run(pool_file, "--out", tmp_path / "x", *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


def test_a_malformed_pool_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": "a", "samples": [{"answer": "1", "correct": "maybe", "completion_tokens": 1}]}\n')
    done = run(bad, "--out", tmp_path / "x")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "bad.jsonl:1" in done.stderr
    assert done.stderr.count("\n") == 1


def test_without_signal_samples_only_the_oracle_bins_remain(pool_file, tmp_path):
    done = run(pool_file, "--out", tmp_path / "m0", "--m", "0", "--splits", "2", "--replicates", "4", "--draws", "5",
               "--weighted-draws", "0")
    assert done.returncode == 0, done.stderr
    res = json.loads((tmp_path / "m0" / "allocation.json").read_text())
    assert res["signals"] == ["oracle"] and res["rules"] == ["majority", "argmax:v"]
