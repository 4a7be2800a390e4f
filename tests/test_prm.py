"""The learned verifiers on real servers: Monte-Carlo process labels from the policy server, the shipped tiny PRM on
its own vLLM pooling server (checked against a transformers forward pass of the same checkpoint), the generative
judge on the policy server, the verifier measurement, and a verifier study end to end."""
import json

import pytest

from search.serving.checkpoint import SHIPPED
from search.contracts import Candidate, LabError
from search.training.labels import agreement, label_solutions, read_jsonl, write_jsonl
from search.build import compose
from search.engine.runner import run
from search.tasks.arith import ArithTask
from verifiers.contract import CHECKS, check_verifier, probe
from verifiers.judge import GenerativeJudge
from verifiers.prm import managed_prm, render

pytestmark = pytest.mark.server
TASK = ArithTask()
SMALL = ["n_problems=8", "cache_path=null"]


def config(*overrides, name="config"):
    return compose([*SMALL, *overrides], config_name=name)


@pytest.fixture(scope="module")
def policy():
    from search.serving.clients import managed_policy

    return managed_policy().client


@pytest.fixture(scope="module")
def prm():
    return managed_prm(TASK)


def test_monte_carlo_labels_from_the_policy_server(policy, tmp_path):
    problems = TASK.problems("train", 12)
    labels = label_solutions(TASK, policy, problems, samples=3, rollouts=4, seed=5)
    assert len(labels) == 36 and {s.problem_id for s in labels} <= {p.id for p in problems}
    for s in labels:
        assert len(s.soft) == len(s.hard) == len(s.exact) == len(s.steps) > 0
        assert all(0.0 <= v <= 1.0 for v in s.soft) and all(h == int(v > 0) for h, v in zip(s.hard, s.soft))
        assert s.soft[-1] == (1.0 if s.correct else 0.0)              # the last step is the solution's own grade
        assert all(v * 4 == int(v * 4) for v in s.soft[:-1])            # a share of 4 rollouts
    again = label_solutions(TASK, policy, problems, samples=3, rollouts=4, seed=5)
    assert again == labels                                              # seeded from the prefix: reproducible
    stats = agreement(labels)
    assert stats["steps"] == sum(len(s.steps) - 1 for s in labels)
    # rollouts from a prefix the checker calls wrong almost never reach the right answer
    assert stats["soft_mean_on_wrong"] < stats["soft_mean_on_right"]
    write_jsonl(labels, tmp_path / "l.jsonl")
    assert read_jsonl(tmp_path / "l.jsonl") == labels
    (tmp_path / "bad.jsonl").write_text('{"problem_id": "x"}\n')
    with pytest.raises(LabError, match=r"bad\.jsonl:1: not a label line"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_training_script_writes_a_servable_token_classifier(policy, tmp_path):
    from search.training import train_prm

    labels = label_solutions(TASK, policy, TASK.problems("train", 10), samples=2, rollouts=2)
    write_jsonl(labels, tmp_path / "l.jsonl")
    train_prm.main(["--labels", str(tmp_path / "l.jsonl"), "--out", str(tmp_path / "prm"), "--steps", "3",
                    "--batch", "4", "--threads", "1", "--val-share", "0.3"])
    config_json = json.loads((tmp_path / "prm" / "config.json").read_text())
    assert config_json["architectures"] == ["LlamaForTokenClassification"] and len(config_json["id2label"]) == 2
    record = json.loads((tmp_path / "prm" / "training.json").read_text())
    assert record["steps_done"] == 3 and record["separator"] == " "
    assert (tmp_path / "prm" / "tokenizer.json").exists() and (tmp_path / "prm" / "model.safetensors").exists()


def test_shipped_prm_matches_a_transformers_forward_pass(prm):
    """vLLM's pooling server and transformers read the same checkpoint: the step scores must agree."""
    import torch
    from transformers import AutoTokenizer, LlamaForTokenClassification

    _, probes = probe(TASK)
    problem, cands = probes[0]
    scores = prm.score(problem, cands)
    assert scores.tokens > 0 and len(scores.steps) == len(cands)
    model = LlamaForTokenClassification.from_pretrained(SHIPPED["tiny-prm"]).eval()
    tok = AutoTokenizer.from_pretrained(SHIPPED["tiny-prm"])
    for cand, row in zip(cands, scores.steps):
        if not cand.steps:
            assert row == (0.0,)
            continue
        ids = tok(render(problem.prompt, cand.steps, " ", "\n"), return_tensors="pt").input_ids
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0].softmax(-1)[:, 1]
        at_sep = probs[ids[0] == tok.convert_tokens_to_ids(" ")].tolist()
        assert len(at_sep) == len(row) == len(cand.steps)
        assert row == pytest.approx(at_sep, abs=2e-3)


def test_the_judge_on_the_policy_server_scores_the_same_prompts_the_same_every_time():
    # the contract's determinism rule compares three calls; this asks 150 times, one call after another as a run
    # does: with the tiny server's worker inside its engine core on two OpenMP threads, one of the probe's prompts
    # got a P(yes) differing in the sixth digit in 1-8% of requests (vLLM binds its own worker process to one
    # core and thread; the in-process worker needs OMP_NUM_THREADS=1 for the same)
    from verifiers.judge import judge

    task, probes = probe()
    j = judge(task, template="{prompt}{solution}", yes_token="</s>", no_token="\n")
    problem, cands = probes[0]
    seen = {j.score(problem, cands).steps for _ in range(150)}
    assert len(seen) == 1, f"{len(seen)} different score vectors for one prompt list: {sorted(seen)[:2]}"


@pytest.mark.parametrize("name", ["prm", "judge"])
def test_served_verifiers_keep_the_contract(name, prm, policy):
    # long_text included: the servers have a 256-token context and the probe's long candidate is 6,000 characters
    if name == "prm":
        assert check_verifier(lambda: prm) == list(CHECKS)
    else:
        from verifiers.judge import judge

        assert check_verifier(lambda: judge(TASK, template="{prompt}{solution}", yes_token="</s>",
                                            no_token="\n")) == list(CHECKS)


def test_a_candidate_past_the_prm_context_is_cut_where_the_server_stops_reading(prm):
    # the tiny PRM's server reads 256 tokens: the contract's long candidate is cut there; the steps whose separators
    # it read score what the same steps score on their own (the PRM reads left to right), the rest 0.0, and the
    # tokens charged are the 256 it read
    from transformers import AutoTokenizer
    from verifiers.contract import long_candidate

    problem = TASK.problems("eval", 1)[0]
    long = long_candidate(TASK, problem)
    tok = AutoTokenizer.from_pretrained(SHIPPED["tiny-prm"])
    ids = tok(prm.render(problem, long)).input_ids
    read = ids[:256].count(tok.convert_tokens_to_ids(" "))
    assert len(ids) > 256 and 0 < read < len(long.steps)
    head = Candidate(steps=long.steps[:read], answer=None, text="", prompt_tokens=1, completion_tokens=1,
                     finish_reason="length")
    cut_before = prm.cut
    scores = prm.score(problem, [long, head])
    assert prm.cut == cut_before + 1 and prm.context() == 256
    assert scores.tokens == 256 + len(tok(prm.render(problem, head)).input_ids)
    row, alone = scores.steps
    assert len(row) == len(long.steps) and row[read:] == (0.0,) * (len(long.steps) - read)
    assert row[:read] == pytest.approx(alone, abs=1e-5)


def test_prm_server_without_the_step_pooler_is_one_clear_error(prm):
    from verifiers.prm import PRMVerifier

    bare = PRMVerifier(TASK, prm.http, prm.model, prm.model_id, prm.n_params, step_separator="+")  # not the tag
    problem = TASK.problems("eval", 1)[0]
    cand = Candidate(steps=("1+2=3", "A:3"), answer="3", text="1+2=3\nA:3", prompt_tokens=1, completion_tokens=1,
                     finish_reason="stop")
    with pytest.raises(LabError, match=r"returned \d+ scores for 2 steps; start its server with the step pooler"):
        bare.score(problem, [cand])


def test_judge_reads_yes_probability_from_logprobs(policy):
    from verifiers.judge import judge

    j = judge(TASK, template="{prompt}{solution}", yes_token="</s>", no_token="\n")
    _, probes = probe(TASK)
    problem, cands = probes[0]
    s = j.score(problem, cands)
    assert len(s.steps) == len(cands) and all(0.0 <= row[0] <= 1.0 for row in s.steps) and s.tokens > 0
    assert j.undecided == 0                        # both answer tokens are always among the top 20 of 23


def test_judge_arithmetic_and_bad_templates():
    j = GenerativeJudge(TASK, None, "m", "m", 0, yes_token="Y", no_token="N")
    assert j.p_yes({"Y": -1.0, "N": -1.0}) == pytest.approx(0.5)
    assert j.p_yes({"Y": 0.0}) == 1.0 and j.p_yes({"N": 0.0}) == 0.0 and j.p_yes({"Z": 0.0}) is None
    with pytest.raises(LabError, match=r"no \{solution\} placeholder"):
        GenerativeJudge(TASK, None, "m", "m", 0, template="{prompt} is it right?")
    with pytest.raises(LabError, match=r"cannot be filled"):
        GenerativeJudge(TASK, None, "m", "m", 0, template="{solution} {answer}")


def test_measure_places_the_prm_on_the_noise_axis(tmp_path):
    from search.analysis.verifier_metrics import sentence
    from search.engine.measuring import measure, write

    table, quality = measure(config("verifier=prm", "strategy.budget=4", name="measure"))
    assert set(table.level) == {"outcome", "step"} and set(quality["levels"]) == {"outcome", "step"}
    step = quality["levels"]["step"]
    assert step["n"] == (table.level == "step").sum() and step["auroc"] > 0.6
    assert quality["matched_flip"]["step"] == {"tpr": step["tpr"], "fpr": step["fpr"]}
    assert "behaves at the outcome level like an exact oracle with TPR" in sentence(quality)
    write(tmp_path, table, quality)
    assert {p.name for p in tmp_path.iterdir()} == {"verifier_scores.parquet", "verifier_quality.json"}
    from plots.verifier_quality import quality_figures

    quality_figures(table, quality, tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"roc.png", "calibration.png"}


def test_measure_recovers_the_rates_of_flip_noise():
    """An exact oracle under flip noise measures at (about) the TPR and FPR it was given."""
    from search.engine.measuring import measure

    _, quality = measure(config("verifier=process_oracle", "noise=flip", "noise.tpr=0.8", "noise.fpr=0.3",
                                "strategy.budget=16", "n_problems=30", name="measure"))
    step = quality["levels"]["step"]
    assert step["tpr"] == pytest.approx(0.8, abs=0.05) and step["fpr"] == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("strategy", ["best_of_k", "beam_search", "dvts", "mcts", "particle_filtering"])
def test_every_strategy_runs_with_the_prm(strategy, tmp_path):
    summary = run(config(f"strategy={strategy}", "strategy.budget=4", "verifier=prm", "n_problems=4"), tmp_path)
    assert summary["verifier"] == "prm" and summary["n_problems"] == 4
    assert summary["ledger_totals"]["verifier_tokens"] > 0 and summary["ledger_totals"]["verifier_calls"] > 0


def test_verifier_study_end_to_end(tmp_path):
    from search.verifier_study import main

    assert main(["verifier=prm", "n_problems=6", "cache_path=null", "--budgets", "4", "8",
                 "--out", str(tmp_path)]) == 0
    quality = json.loads((tmp_path / "quality" / "verifier_quality.json").read_text())
    jobs = {p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("summary.json")}
    assert set(quality["matched_scores"]) == {"outcome", "step"}
    arms = ("oracle", "verifier", "matched", "matched_scores")
    assert jobs == {*(f"best_of_k/{arm}" for arm in arms), *(f"beam_search/{arm}/b{b}" for arm in arms for b in (4, 8))}
    fitted = json.loads((tmp_path / "best_of_k/matched_scores/summary.json").read_text())["noise"]
    assert fitted["sigma_wrong"] == pytest.approx(quality["matched_scores"]["outcome"]["sigma_wrong"], abs=1e-4)
    matched = json.loads((tmp_path / "beam_search/matched/b8/summary.json").read_text())["noise"]
    assert matched["tpr"] == pytest.approx(quality["matched_flip"]["step"]["tpr"], abs=1e-4)
    text = (tmp_path / "report.md").read_text()
    for needle in ("# Verifier study: prm", "behaves at the outcome level like an exact oracle",
                   "![verifier_roc](verifier_roc.png)", "![verifier_calibration](verifier_calibration.png)",
                   "![verifier_arms](verifier_arms.png)"):
        assert needle in text, needle
    assert all((tmp_path / f"{n}.png").stat().st_size > 10_000 for n in ("verifier_roc", "verifier_arms"))


TINY_JUDGE = dict(checkpoint="tiny-judge", template="{prompt}{solution}\n=", yes_token="1", no_token="0")
"""The shipped tiny generative verifier and the prompt and verdict tokens it was trained on (conf/verifier/tiny_judge)."""


def test_shipped_judge_serves_the_verdicts_it_was_trained_on():
    """vLLM's P(yes) from the top logprobs equals a transformers forward pass of the same checkpoint, and the
    sampled version keeps the verifier contract."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from verifiers.judge import judge
    from verifiers.sampled_judge import sampled_judge

    served = judge(TASK, **TINY_JUDGE)
    _, probes = probe(TASK)
    problem, cands = probes[0]
    scores = served.score(problem, cands)
    model = LlamaForCausalLM.from_pretrained(SHIPPED["tiny-judge"]).eval()
    tok = AutoTokenizer.from_pretrained(SHIPPED["tiny-judge"])
    yes, no = tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("0")
    for cand, (p_served,) in zip(cands, scores.steps):
        ids = tok(served.judge_prompt(problem, cand), return_tensors="pt").input_ids
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0, -1].softmax(-1)
        assert p_served == pytest.approx(float(probs[yes] / (probs[yes] + probs[no])), abs=2e-3)
    assert len({round(p, 3) for (p,) in scores.steps}) > 1            # it tells candidates apart
    # a candidate past the 256-token context: its solution cut so the prompt and the answer token fit, scored as
    # transformers scores the cut prompt
    from verifiers.contract import long_candidate

    long = long_candidate(TASK, problem)
    (p_long,), = served.score(problem, [long]).steps
    [cut] = served.prompts(problem, [long])
    ids = tok(cut, return_tensors="pt").input_ids
    assert served.cut == 2 and 250 <= ids.shape[1] <= 255 and cut.endswith("\n=")
    with torch.no_grad():
        probs = model(input_ids=ids).logits[0, -1].softmax(-1)
    assert p_long == pytest.approx(float(probs[yes] / (probs[yes] + probs[no])), abs=2e-3)
    assert check_verifier(lambda: sampled_judge(TASK, samples=2, **TINY_JUDGE)) == list(CHECKS)
