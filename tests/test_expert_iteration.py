"""Expert iteration (search/expert_iteration.py): what a round keeps, the fine-tune's record, the grid's bad input,
and the small grid end to end on real vLLM servers, its table recomputed by hand from the samples and pools it
stored."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from search.expert_iteration import kept

ROOT = Path(__file__).resolve().parents[1]


def row(pid, text, accepted, correct=True):
    return {"problem_id": pid, "prompt": "Q", "text": text, "accepted": accepted, "correct": correct}


def test_kept_takes_distinct_accepted_solutions_up_to_the_cap_in_sample_order():
    rows = [row("a", "x", True), row("a", "x", True), row("a", "y", False), row("a", "z", True),
            row("a", "w", True), row("b", "x", True, False), row("b", "v", False)]
    got = kept(rows, 2)
    assert [(r["problem_id"], r["text"]) for r in got] == [("a", "x"), ("a", "z"), ("b", "x")]
    assert kept(rows, 0) == []


def test_finetune_continues_a_checkpoint_and_adds_its_flops(tmp_path):
    from search.tasks.arith import ArithTask
    from search.training import train_policy

    base = tmp_path / "base"
    assert train_policy.main(["--out", str(base), "--hidden", "32", "--layers", "1", "--heads", "1", "--steps", "5",
                              "--batch", "8", "--warmup", "1", "--threads", "1"]) == 0
    task = ArithTask()
    pairs = [(p.prompt, task.solution(p)) for p in task.problems("train", 20)]
    rec = train_policy.finetune(base, pairs, tmp_path / "ft", epochs=2, batch=8, lr=1e-3, warmup=1, threads=1,
                                extra={"round": 1})
    before = json.loads((base / "training.json").read_text())
    assert rec["steps_done"] == 5 and rec["pairs"] == 20 and rec["round"] == 1      # 40 solutions in batches of 8
    assert rec["training_flops"] == before["training_flops"] + 6 * rec["n_params"] * rec["finetune_tokens"]
    assert rec["tokens"] == before["tokens"] + rec["finetune_tokens"]
    assert json.loads((tmp_path / "ft" / "training.json").read_text()) == rec
    assert not (tmp_path / "ft.tmp").exists()
    from search.contracts import LabError

    with pytest.raises(LabError, match="no solution was kept"):
        train_policy.finetune(base, [], tmp_path / "none")


@pytest.mark.parametrize("change, message", [
    ({"arms": {"a": {"threshold": 0.5}}}, "arm a needs 'verifier'"),
    ({"rounds": 0}, "rounds, samples and problems must be at least 1"),
    ({"finetune": None}, "the grid has no 'finetune'"),
])
def test_a_bad_grid_is_one_error_line_and_exit_2(tmp_path, capsys, change, message):
    from search.expert_iteration import main

    grid = yaml.safe_load((ROOT / "conf" / "expert" / "small.yaml").read_text())
    for key, value in change.items():
        grid.pop(key) if value is None else grid.__setitem__(key, value)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(SystemExit) as exit_:
        main(["--grid", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


# -- the small grid, end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    from search.expert_iteration import load_grid, study

    out = tmp_path_factory.mktemp("expert") / "study"
    study(load_grid("small"), out)
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.server
def test_the_small_loop_recomputed_by_hand(small_study):
    out = small_study
    grid = yaml.safe_load((ROOT / "conf" / "expert" / "small.yaml").read_text())
    table = pd.read_csv(out / "rounds.csv")
    assert len(table) == len(grid["arms"]) * (grid["rounds"] + 1)
    start = json.loads((ROOT / "search" / "tiny" / "policy" / "training.json").read_text())
    # round 1 of every arm samples the start policy with the same seed: the same draws
    texts = {arm: [r["text"] for r in lines(out / "arms" / arm / "round-1" / "samples.jsonl")] for arm in grid["arms"]}
    assert len({tuple(t) for t in texts.values()}) == 1
    for arm in grid["arms"]:
        prev_flops = start["training_flops"]
        for r in range(grid["rounds"] + 1):
            got = table[(table.arm == arm) & (table["round"] == r)].iloc[0]
            pools = out / "start" / "eval" if r == 0 else out / "arms" / arm / f"round-{r}" / "eval"
            records = lines(pools / "records.jsonl")
            assert got.pass_at_1 == pytest.approx(np.mean([np.mean(x["pool"]["correct"]) for x in records]))
            assert got.pass_at_max_k == pytest.approx(np.mean([any(x["pool"]["correct"]) for x in records]))
            first = table[(table.arm == arm) & (table["round"] == 0)].iloc[0]
            assert got.pass_at_1_minus_start == pytest.approx(got.pass_at_1 - first.pass_at_1)
            assert got.pass_at_1_minus_start_ci_low <= got.pass_at_1_minus_start <= got.pass_at_1_minus_start_ci_high
            if r == 0:
                continue
            samples = lines(out / "arms" / arm / f"round-{r}" / "samples.jsonl")
            assert len(samples) == grid["problems"] * grid["samples"]
            keep = kept(samples, grid["keep_per_problem"])
            assert got.kept == len(keep) and got.accepted == sum(s["accepted"] for s in samples)
            training = json.loads((out / "arms" / arm / f"round-{r}" / "policy" / "training.json").read_text())
            assert training["pairs"] == len(keep) and training["round"] == r and training["arm"] == arm
            assert training["training_flops"] == prev_flops + 6 * training["n_params"] * training["finetune_tokens"]
            assert got.training_flops == training["training_flops"]
            prev_flops = training["training_flops"]
            if arm == "oracle":         # the exact oracle accepts exactly the right samples
                assert all(s["accepted"] == s["correct"] for s in samples) and got.kept_wrong_share == 0
            else:                       # flip noise with tpr 1: every right sample accepted, some wrong ones too
                assert all(s["accepted"] for s in samples if s["correct"])
                assert got.verifier_tpr == 1.0
    for name in ("report.md", "report.html", "rounds.png", "curves_by_round.png", "curves.parquet"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.server
def test_the_small_loop_resumes_and_refuses_another_grid(small_study, tmp_path, capsys):
    from search.expert_iteration import main

    out = small_study
    before = {p: p.read_bytes() for p in sorted(out.rglob("*.jsonl"))}
    assert main(["--grid", "small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "round 1 (" in printed                                   # every round reports, and finds its work done
    assert {p: p.read_bytes() for p in before} == before
    grid = yaml.safe_load((ROOT / "conf" / "expert" / "small.yaml").read_text())
    grid["samples"] = 8
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(SystemExit) as exit_:
        main(["--grid", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == [f"error: {out} holds a study made with another grid (its samples "
                                             f"differ): give a new --out, or delete {out}"]
