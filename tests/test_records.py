"""The record file on its own: complete lines only, a torn last line cut on open (byte for byte), the finished ids read
back, and what a rerun does with them; then resume through a whole run on the fake policy."""
from __future__ import annotations

import json

import pytest

from search.build import compose
from search.contracts import LabError
from search.engine.records import RecordFile, check_run_dir, write_json_atomic
from search.engine.runner import run
from tests.arith_fakes import with_fake_policy

GOOD = [{"problem_id": "a", "x": 1}, {"problem_id": "b", "x": [1, 2]}, {"problem_id": "c", "x": "é"}]


def lines(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def test_a_new_file_gets_one_line_per_record(tmp_path):
    path = tmp_path / "records.jsonl"
    rf = RecordFile(path)
    assert rf.records == [] and rf.done == set()
    for r in GOOD:
        rf.append(r)
    rf.sync()
    assert [json.loads(x) for x in path.read_text().splitlines()] == GOOD
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 3
    assert rf.done == {"a", "b", "c"} and rf.records == GOOD


@pytest.mark.parametrize("torn", ['{"problem_id": "d", "x": [1', '{', '{"problem_id": "d"', '\x00\x00'])
def test_a_torn_last_line_is_cut_on_open_and_the_rest_read_back(tmp_path, torn):
    path = tmp_path / "records.jsonl"
    good = lines(GOOD)
    path.write_bytes(good.encode() + torn.encode())
    rf = RecordFile(path)
    assert rf.records == GOOD and rf.done == {"a", "b", "c"}
    assert path.read_bytes() == good.encode()                   # cut exactly at the end of the last whole line
    rf.append({"problem_id": "d"})
    assert [json.loads(x)["problem_id"] for x in path.read_text().splitlines()] == ["a", "b", "c", "d"]
    assert RecordFile(path).done == {"a", "b", "c", "d"}       # a second open finds nothing to cut


def test_everything_after_a_torn_line_is_dropped(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(lines(GOOD[:1]) + '{"problem_id": "b"\n' + lines(GOOD[2:]))
    rf = RecordFile(path)
    assert rf.done == {"a"} and path.read_text() == lines(GOOD[:1])


def test_a_last_record_without_its_newline_survives_the_next_append(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(lines(GOOD[:2]) + json.dumps(GOOD[2]))      # killed between the record and its newline
    rf = RecordFile(path)
    rf.append({"problem_id": "d"})
    assert RecordFile(path).done == {"a", "b", "c", "d"}        # either kept whole or cut, never glued


def test_json_is_written_atomically(tmp_path):
    path = tmp_path / "s.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2} and [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_a_new_directory_records_its_config_and_an_empty_one_accepts_another(tmp_path):
    check_run_dir(tmp_path, {"seed": 1})
    assert json.loads((tmp_path / "run_config.json").read_text()) == {"seed": 1}
    check_run_dir(tmp_path, {"seed": 2})                        # no records yet: the new config replaces the old
    assert json.loads((tmp_path / "run_config.json").read_text()) == {"seed": 2}


def test_records_of_another_config_are_one_error_naming_the_first_four_differences(tmp_path):
    import re

    old = {"seed": 1, "a": {"x": 1, "y": 2}, "b": 3, "c": 4, "d": 5}
    check_run_dir(tmp_path, old)
    (tmp_path / "records.jsonl").write_text('{"problem_id": "p"}\n')
    check_run_dir(tmp_path, dict(old))                                   # the same config: accepted
    new = {"seed": 2, "a": {"x": 1, "y": 3}, "b": 3, "c": 5, "e": 6}      # d unset, e new, seed, a.y and c changed
    with pytest.raises(LabError) as err:
        check_run_dir(tmp_path, new)
    assert str(err.value) == (
        f"{tmp_path} holds records of another config (a.y: 2 -> 3; c: 4 -> 5; d: 5 -> (unset); e: (unset) -> 6 "
        f"and 1 more): run into a new directory (hydra.run.dir=... or hydra.sweep.dir=...), or delete {tmp_path} "
        f"to start it afresh")
    with pytest.raises(LabError, match=re.escape("(c: 4 -> 5): run into")):    # one difference: no "more"
        check_run_dir(tmp_path, dict(old, c=5))
    assert json.loads((tmp_path / "run_config.json").read_text()) == old  # the refused config is not recorded
    summary_only = tmp_path / "old_layout"                                # before run_config.json: the summary's
    summary_only.mkdir()
    (summary_only / "summary.json").write_text(json.dumps({"config": old}))
    (summary_only / "records.jsonl").write_text('{"problem_id": "p"}\n')
    with pytest.raises(LabError, match=re.escape("(seed: 1 -> 2)")):
        check_run_dir(summary_only, dict(old, seed=2))


def test_a_directory_from_before_split_existed_resumes_as_the_evaluation_set(tmp_path):
    import re

    old = {"seed": 1, "n_problems": 5}                                   # written before conf/config.yaml had split
    check_run_dir(tmp_path, old)
    (tmp_path / "records.jsonl").write_text('{"problem_id": "p"}\n')
    check_run_dir(tmp_path, dict(old, split="eval"))
    with pytest.raises(LabError, match=re.escape("(split: eval -> train)")):
        check_run_dir(tmp_path, dict(old, split="train"))


# -- resume through a whole run -----------------------------------------------------------------------------------
def config(n):
    return with_fake_policy(compose([f"n_problems={n}", "strategy.budget=4", "bootstrap_resamples=20",
                                     "weighted_vote_draws=20"]), slip=0.3)


def test_a_rerun_of_a_finished_run_sends_no_request_and_writes_nothing(tmp_path, monkeypatch):
    import search.engine.runner as runner
    from search.build import build_policy

    first = run(config(4), tmp_path)
    before = (tmp_path / "records.jsonl").read_bytes()
    built = []
    monkeypatch.setattr(runner, "build_policy", lambda c: built.append(build_policy(c)) or built[-1])
    again = run(config(4), tmp_path)
    assert built[0].requests == 0 and built[0].calls == []
    assert (tmp_path / "records.jsonl").read_bytes() == before
    assert again["budgets"] == first["budgets"] and again["n_problems"] == 4


def test_a_resumed_run_asks_only_for_the_problems_it_lacks(tmp_path, monkeypatch):
    import search.engine.runner as runner
    from search.build import build_policy, build_task

    run(config(3), tmp_path)
    done = [json.loads(x)["problem_id"] for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    built = []
    monkeypatch.setattr(runner, "build_policy", lambda c: built.append(build_policy(c)) or built[-1])
    summary = run(config(6), tmp_path)
    problems = build_task(config(6)).problems("eval", 6)
    asked = sorted(prompt for prompt, _ in built[0].calls)
    assert asked == sorted(p.prompt for p in problems if p.id not in done) and len(asked) == 3
    ids = [json.loads(x)["problem_id"] for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert ids[:3] == done and sorted(ids) == sorted(p.id for p in problems) and summary["n_problems"] == 6
