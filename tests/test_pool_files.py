"""Pool files from elsewhere: the format round-trips, a run directory converts, an import is a run directory the
estimators agree with, and every malformed file gives one error line with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.analysis import estimators
from search.contracts import LabError
from search.engine import pool_files
from search.pools import main

ROOT = Path(__file__).resolve().parents[1]


def problem_line(pid, answers, correct, tokens=None, scores=None, **extra):
    tokens = tokens or [10 + i for i in range(len(answers))]
    samples = [{"answer": a, "correct": c, "completion_tokens": t} for a, c, t in zip(answers, correct, tokens)]
    for name, values in (scores or {}).items():
        for s, v in zip(samples, values):
            s.setdefault("scores", {})[name] = v
    return json.dumps({"problem_id": pid, "samples": samples, **extra})


def write_lines(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(3)
    lines = [json.dumps({"lab_pools": 1, "policy_params": 1000, "verifier_params": {"v": 10}, "source": "test"})]
    for i in range(6):
        answers = [str(a) for a in rng.integers(0, 4, size=8)]
        correct = [a == "1" for a in answers]
        scores = {"v": [round(float(x), 3) for x in rng.random(8)], "w": [float(c) for c in correct]}
        lines.append(problem_line(f"p{i}", answers, correct, scores=scores, prompt_tokens=7,
                                  metadata={"n_ops": i % 3}))
    return write_lines(tmp_path / "pools.jsonl", lines)


def test_jsonl_reads_and_round_trips(good, tmp_path):
    pools = pool_files.read_pools(good)
    assert len(pools.problems) == 6 and pools.verifiers == ["v", "w"] and pools.policy_params == 1000
    assert pools.problems[0].prompt_tokens == 7 and pools.problems[0].metadata == {"n_ops": 0}
    again = tmp_path / "again.jsonl"
    pool_files.write_jsonl(pools, again)
    back = pool_files.read_pools(again)
    for a, b in zip(pools.problems, back.problems):
        assert (a.answers, a.correct, a.completion_tokens, a.scores, a.metadata) == \
               (b.answers, b.correct, b.completion_tokens, b.scores, b.metadata)


def test_parquet_shape_reads_the_same_pools(good, tmp_path):
    import pandas as pd

    pools = pool_files.read_pools(good)
    rows = [{"problem_id": p.problem_id, "answer": a, "correct": c, "completion_tokens": t, "prompt_tokens": 7,
             "score:v": p.scores["v"][i], "score:w": p.scores["w"][i]}
            for p in pools.problems for i, (a, c, t) in enumerate(zip(p.answers, p.correct, p.completion_tokens))]
    pd.DataFrame(rows).to_parquet(tmp_path / "pools.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "pools.csv", index=False)
    for name in ("pools.parquet", "pools.csv"):
        back = pool_files.read_pools(tmp_path / name)
        assert back.verifiers == ["v", "w"]
        for a, b in zip(pools.problems, back.problems):
            assert (a.answers, a.correct, a.completion_tokens, a.scores) == \
                   (b.answers, b.correct, b.completion_tokens, b.scores)


def test_import_writes_a_run_directory_the_estimators_agree_with(good, tmp_path, capsys):
    assert main(["import", str(good), "--out", str(tmp_path / "run"), "--verifier", "v", "--resamples", "50"]) == 0
    assert "generation requests sent: 0" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    pools = pool_files.read_pools(good)
    rows = {r["k"]: r for r in summary["budgets"]}
    assert sorted(rows) == [1, 2, 4, 8]
    for k in (1, 2, 4, 8):
        cov = np.mean([estimators.pass_at_k(p.n, sum(p.correct), k) for p in pools.problems])
        arg = np.mean([estimators.best_of_k(p.scores["v"], p.correct, k) for p in pools.problems])
        maj = np.mean([estimators.majority_at_k(p.answers, p.correct, k) for p in pools.problems])
        assert rows[k]["coverage"] == pytest.approx(cov)
        assert rows[k]["argmax"] == pytest.approx(arg)
        assert rows[k]["majority"] == pytest.approx(maj)
    # the sweep collector reads it like any run
    from search.analysis.tables import collect

    table = collect(tmp_path)
    assert set(table["selection"]) >= {"coverage", "argmax", "majority"} and table["generation_requests"].eq(0).all()


def fake_run(run_dir: Path, verifier: str, pools, scores) -> Path:
    run_dir.mkdir(parents=True)
    with open(run_dir / "records.jsonl", "w") as fh:
        for (pid, answers, correct), s in zip(pools, scores):
            ledger = {"prompt_tokens": 30, "policy_requests": 1, "verifier_params": len(verifier)}
            pool = {"text": ["t"] * len(answers), "answer": answers, "correct": correct, "score": s,
                    "completion_tokens": [5] * len(answers), "finish_reason": ["stop"] * len(answers)}
            fh.write(json.dumps({"problem_id": pid, "metadata": {"n_ops": 2}, "ledger": ledger, "pool": pool}) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({"verifier": verifier, "policy_params": 99}))
    return run_dir


def test_runs_on_the_same_pools_merge_and_export(tmp_path, capsys):
    pools = [("a", ["1", "2", None], [True, False, False]), ("b", ["3", "3", "4"], [False, False, True])]
    one = fake_run(tmp_path / "one", "oracle", pools, [[1, 0, 0], [0, 0, 1]])
    two = fake_run(tmp_path / "two", "noisy", pools, [[0.5, 0.25, 0.0], [0.75, 0.5, 1.0]])
    assert main(["export", str(one), str(two), "--out", str(tmp_path / "p.jsonl")]) == 0
    back = pool_files.read_pools(tmp_path / "p.jsonl")
    assert back.verifiers == ["oracle", "noisy"] and back.policy_params == 99
    assert back.verifier_params == {"oracle": 6, "noisy": 5}
    assert back.problems[0].answers == ["1", "2", None] and back.problems[1].scores["noisy"] == [0.75, 0.5, 1.0]
    assert back.problems[0].prompt_tokens == 30 and back.problems[0].metadata == {"n_ops": 2}
    other = fake_run(tmp_path / "other", "x", [("a", ["9", "9", "9"], [False] * 3), pools[1]], [[0] * 3, [0] * 3])
    with pytest.raises(LabError, match="other samples"):
        pool_files.load([one, other])


BAD = {
    "not json": (["{oops"], "not valid JSON"),
    "no samples": ([json.dumps({"problem_id": "x"})], "no 'samples' field"),
    "no correct": ([json.dumps({"problem_id": "x", "samples": [{"answer": "1", "completion_tokens": 3}]})],
                   "no 'correct' field"),
    "string grade": ([problem_line("x", ["1"], ["yes"])], "correct='yes'"),
    "graded twice": ([problem_line("x", ["1", "1"], [True, False])], "correctness must depend on the answer"),
    "negative tokens": ([problem_line("x", ["1"], [True], tokens=[-3])], "completion_tokens=-3"),
    "score out of range": ([problem_line("x", ["1"], [True], scores={"v": [1.5]})], "in [0, 1]"),
    "missing verifier": ([problem_line("x", ["1"], [True], scores={"v": [0.5]}),
                          problem_line("y", ["1"], [True], scores={"w": [0.5]})], "same verifiers"),
    "duplicate": ([problem_line("x", ["1"], [True]), problem_line("x", ["2"], [False])], "already appeared"),
    "empty pool": ([json.dumps({"problem_id": "x", "samples": []})], "no samples"),
    "late header": ([problem_line("x", ["1"], [True]), json.dumps({"lab_pools": 1})], "put it first"),
    "wrong version": ([json.dumps({"lab_pools": 7})], "version 1"),
    "empty": ([""], "holds no problem"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_file_is_one_error_line_and_exit_2(case, tmp_path, capsys):
    lines, expected = BAD[case]
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(SystemExit) as done:
        main(["check", str(path)])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert str(path) in err[0]


def test_a_parquet_without_a_column_names_it(tmp_path, capsys):
    import pandas as pd

    pd.DataFrame({"problem_id": ["a"], "answer": ["1"], "completion_tokens": [3]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(SystemExit) as done:
        main(["check", str(tmp_path / "x.parquet")])
    assert done.value.code == 2 and "no column 'correct'" in capsys.readouterr().err


def test_the_lab_command_runs_it(good):
    out = subprocess.run([sys.executable, "-m", "search.lab", "pools", "check", str(good)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0 and "6 problems" in out.stdout and "well-formed" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "search.lab", "pools", "check", str(good.parent / "none.jsonl")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr
