"""The tiny verifiers' training, without a server: labels from the fake arithmetic policy, a few optimizer steps.

What is checked: labels made without rollouts keep exact step labels and grades; the data split is by problem,
nested in the amount and stable in validation; the pairwise loss against its definition; every family
(Monte-Carlo, exact, outcome, pairwise, generative) trains, saves a loadable checkpoint and records its FLOPs; bad
input is one line and exit code 2.
"""
from __future__ import annotations

import json
import math

import pytest

from search.contracts import LabError
from search.tasks.arith import ArithTask
from search.training import fit, train_judge, train_prm
from search.training.labels import agreement, label_solutions, write_jsonl
from tests.arith_fakes import ArithPolicy

TASK = ArithTask()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """40 training problems x 4 graded samples of the fake policy (a slip rate that leaves both kinds)."""
    labels = label_solutions(TASK, ArithPolicy(slip=0.25), TASK.problems("train", 40), samples=4, rollouts=0, seed=3)
    path = tmp_path_factory.mktemp("labels") / "graded.jsonl"
    write_jsonl(labels, path)
    return labels, path


def test_labels_without_rollouts_keep_exact_labels_and_grades(graded):
    labels, _ = graded
    assert len(labels) == 160
    for sol in labels:
        assert sol.soft == () and sol.hard == ()
        problem = next(p for p in TASK.problems("train", 40) if p.id == sol.problem_id)
        assert sol.exact == tuple(int(v) for v in _prefix_right(TASK.check_steps(problem, sol.steps)))
        assert sol.correct == TASK.grade(problem, TASK.extract_answer("\n".join(sol.steps)))
    stats = agreement(labels)
    assert stats["steps"] == 0 and stats["solutions"] == 160
    assert stats["solution_accuracy"] == sum(s.correct for s in labels) / 160
    assert 0 < stats["solution_accuracy"] < 1


def _prefix_right(flags):
    """1 while every step so far is right (the process oracle's prefix label), by hand."""
    out, ok = [], True
    for f in flags:
        ok = ok and f
        out.append(ok)
    return out


def test_split_is_by_problem_nested_in_the_amount_and_stable_in_validation(graded):
    labels, _ = graded
    train_all, val_all = fit.split(labels, seed=0, val_share=0.25, max_solutions=None)
    assert {s.problem_id for s in train_all}.isdisjoint({s.problem_id for s in val_all})
    assert len(train_all) + len(val_all) == len(labels)
    small, val_small = fit.split(labels, seed=0, val_share=0.25, max_solutions=20)
    assert val_small == val_all                                   # the amount never moves validation
    assert small == train_all[:len(small)] and 20 <= len(small) < 24   # whole problems of 4, a prefix
    with pytest.raises(LabError, match="non-empty"):
        fit.split(labels, seed=0, val_share=1.0, max_solutions=None)


def test_cosine_schedule_at_hand_points():
    assert fit.cosine_lr(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert fit.cosine_lr(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert fit.cosine_lr(50, 1.0, 10, 100) == pytest.approx(0.05 + 0.95 * 0.5)
    assert fit.cosine_lr(100, 1.0, 10, 100) == pytest.approx(0.05)
    assert fit.cosine_lr(400, 1.0, 10, 100) == pytest.approx(0.05)


def test_pairwise_loss_is_the_mean_over_right_wrong_pairs_of_one_problem():
    import torch

    scores = torch.tensor([2.0, -1.0, 0.5, 3.0, 1.0, 0.0])
    correct = [True, False, False, True, False, True]
    problems = ["a", "a", "a", "b", "b", "c"]               # c has no wrong solution: no pair
    pairs = [(0, 1), (0, 2), (3, 4)]
    expected = -sum(math.log(1 / (1 + math.exp(-(scores[r] - scores[w]).item()))) for r, w in pairs) / len(pairs)
    assert fit.pairwise_loss(scores, correct, problems).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(LabError, match="no problem with both"):
        fit.pairwise_loss(scores[5:], correct[5:], problems[5:])


def _few_steps(path, out):
    return ["--labels", str(path), "--out", str(out), "--steps", "3", "--batch", "8", "--threads", "1",
            "--val-share", "0.25", "--eval-every", "2"]


@pytest.mark.parametrize("flags", [["--label", "exact"], ["--label", "outcome"],
                                   ["--label", "outcome", "--objective", "pairwise", "--select", "within"],
                                   ["--label", "exact", "--layers", "1", "--width", "64"]])
def test_every_token_classifier_family_trains_and_saves(graded, tmp_path, flags):
    from transformers import LlamaForTokenClassification

    _, path = graded
    assert train_prm.main(_few_steps(path, tmp_path / "v") + flags) == 0
    record = json.loads((tmp_path / "v" / "training.json").read_text())
    model = LlamaForTokenClassification.from_pretrained(tmp_path / "v")
    n_params = sum(p.numel() for p in model.parameters())
    assert record["n_params"] == n_params and record["steps_done"] == 3
    assert record["training_flops"] == 6 * n_params * record["tokens"] > 0
    assert 0.0 <= record["val_auroc_within"] <= 1.0 and record["best_step"] in (0, 2, 3)
    assert (n_params < 1_000_000) == ("--layers" in flags)      # the fresh 1-layer, 64-wide model is smaller


def test_generative_verifier_trains_and_writes_its_verdict_tokens(graded, tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    _, path = graded
    assert train_judge.main(_few_steps(path, tmp_path / "j")) == 0
    record = json.loads((tmp_path / "j" / "training.json").read_text())
    assert record["template"] == "{prompt}{solution}\n=" and (record["yes_token"], record["no_token"]) == ("1", "0")
    tok = AutoTokenizer.from_pretrained(tmp_path / "j")
    model = LlamaForCausalLM.from_pretrained(tmp_path / "j").eval()
    text = train_judge.render("Q:1+2\n", ["1+2=3", "A:3"])
    assert text == "Q:1+2\n1+2=3\nA:3\n="
    ids = tok(text, return_tensors="pt").input_ids
    assert ids[0, 0] == tok.bos_token_id and len(ids[0]) == len(text) + 1
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape == (1, len(text) + 1, len(tok))


def test_bad_training_input_is_one_line_and_exit_2(graded, tmp_path, capsys):
    _, path = graded
    assert train_prm.main(_few_steps(path, tmp_path / "v") + ["--label", "hard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "without rollouts" in err and "--label exact" in err
    assert train_prm.main(_few_steps(path, tmp_path / "v") + ["--label", "exact", "--layers", "2"]) == 2
    assert "--layers and --width go together" in capsys.readouterr().err
    assert train_judge.main(_few_steps(path, tmp_path / "j") + ["--val-share", "0"]) == 2
    assert "non-empty" in capsys.readouterr().err
    assert not (tmp_path / "v").exists() and not (tmp_path / "j").exists()


def test_generative_verifier_trains_on_prefixes_labelled_by_exact_steps(graded, tmp_path):
    labels, path = graded
    assert train_judge.main(_few_steps(path, tmp_path / "with")) == 0
    assert train_judge.main(_few_steps(path, tmp_path / "without") + ["--no-prefixes"]) == 0
    with_, without = (json.loads((tmp_path / d / "training.json").read_text()) for d in ("with", "without"))
    train, _ = fit.split(labels, seed=0, val_share=0.25, max_solutions=None)
    assert with_["train_solutions"] == without["train_solutions"] == without["train_sequences"] == len(train)
    assert with_["train_sequences"] == len(train) + sum(len(s.steps) - 1 for s in train)


def test_generative_verifier_with_a_pairwise_term(graded, tmp_path):
    _, path = graded
    assert train_judge.main(_few_steps(path, tmp_path / "p") + ["--pairwise", "1.0"]) == 0
    assert json.loads((tmp_path / "p" / "training.json").read_text())["pairwise"] == 1.0
