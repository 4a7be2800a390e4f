"""Real math tasks: the loader (JSONL, Parquet), math-verify grading, chat-template prompts from a tokenizer built
here, bad input as one line, the real MATH-500 and GSM8K files from ../shared/data, and best-of-k end to end on the
tiny policy server with the shipped sample."""
import json
import os
from pathlib import Path

import pytest

from search.contracts import LabError
from search.tasks.math import MathTask, equivalent, gsm8k_answer, last_boxed

SHARED = Path(os.environ.get("LAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
"""The real MATH-500 and GSM8K files: ../shared/data beside the repository (or $LAB_SHARED_DATA); never copied."""
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory):
    """A real Hugging Face tokenizer with a chat template, built here (no hub): the tiny character tokenizer."""
    from search.training.tokenizer import save_tokenizer

    out = tmp_path_factory.mktemp("chat_tok")
    save_tokenizer(out)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": CHAT_TEMPLATE}))
    return out


def test_shipped_sample_loads_and_grades_its_own_solutions():
    task = MathTask("math_sample.jsonl")
    problems = task.problems("eval")
    assert len(problems) == 12 and len({p.id for p in problems}) == 12
    assert problems[0].metadata == {"level": 1, "subject": "Prealgebra"} and task.problems("eval", 3) == problems[:3]
    rows = [json.loads(line) for line in (Path(__file__).parents[1] / "search/tasks/data/math_sample.jsonl").open()]
    for p, row in zip(problems, rows):
        steps = task.split_steps(row["solution"])
        assert len(steps) == 2 and task.extract_answer(row["solution"]) == last_boxed(steps[-1])
        assert task.grade(p, task.extract_answer(row["solution"]))
    with pytest.raises(LabError, match="no exact step checker"):
        task.check_steps(problems[0], ["a"])
    with pytest.raises(LabError, match="only an eval split"):
        task.problems("train", 1)


@pytest.mark.parametrize("ref, answer, same", [
    ("\\frac{1}{4}", "0.25", True), ("\\frac{5}{6}", "5/6", True), ("\\frac{9}{4}", "2.25", True),
    ("2,3", "3, 2", True), ("(2,\\infty)", "(2, \\infty)", True), ("5\\sqrt{2}", "\\sqrt{50}", True),
    ("9\\pi", "9 \\pi", True), ("12", "12.0", True), ("12", "13", False), ("\\frac{1}{2}", "0.51", False),
    ("0", "__import__('os').system('touch /tmp/lab-pwned')", False),
])
def test_math_verify_grades_equivalent_forms(ref, answer, same):
    assert equivalent(ref, answer) is same
    assert not Path("/tmp/lab-pwned").exists()              # nothing is ever evaluated as Python


def test_answer_extraction():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{a}{b}} done") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None
    assert gsm8k_answer("blah\n#### 1,234") == "1234" and gsm8k_answer("none") is None
    assert gsm8k_answer("a #### 1 then #### 2") == "2" and gsm8k_answer("#### ") is None


@pytest.mark.parametrize("text, answer", [
    ("so \\fbox{7}", "7"),                                          # \fbox is a box too
    ("\\boxed{3} and later \\fbox{5}", "5"),                          # the last box, whichever command
    ("\\fbox{3} and later \\boxed{5}", "5"),
    ("\\boxed{ 12 }", "12"),
    ("\\boxed{}", None),                                             # an empty box is no answer
    ("\\boxed{ }", None),
    ("#### 4", "4"),
    ("work\n#### 4\nso \\boxed{5}", "5"),                          # a box wins over GSM8K's marker
    ("\\boxed{5}\n#### 4", "5"),
    ("\\boxed{}\n#### 4", "4"),                                       # an empty box falls back to the marker
    ("no answer at all", None),
])
def test_math_task_extracts_the_last_box_then_the_gsm8k_marker(text, answer):
    assert MathTask("math_sample.jsonl").extract_answer(text) == answer


def test_an_empty_or_missing_answer_is_graded_wrong():
    task = MathTask("math_sample.jsonl")
    p = task.problems("eval")[1]                                       # 3x - 7 = 11: x = 6
    assert p.reference == "6" and task.grade(p, "6") and task.grade(p, task.extract_answer("so \\fbox{6}"))
    assert not task.grade(p, task.extract_answer("\\boxed{}")) and not task.grade(p, None)
    assert not task.grade(p, "") and not task.grade(p, " ") and not task.grade(p, "16") and not task.grade(p, "60")
    assert not equivalent("6", "") and not equivalent("6", "  ") and not equivalent("16", "6")


def test_parquet_and_gsm8k_format(tmp_path):
    import pandas as pd

    pd.DataFrame([{"question": "2+2?", "answer": "2+2=4\n#### 4"}]).to_parquet(tmp_path / "g.parquet")
    task = MathTask(str(tmp_path / "g.parquet"), problem_field="question", answer_format="gsm8k", id_field=None)
    [p] = task.problems("eval")
    assert p.reference == "4" and len(p.id) == 12 and task.grade(p, "4.0") and not task.grade(p, None)


@pytest.mark.parametrize("line, kwargs, message", [
    ('{"problem": "1+1"}', {}, r"bad\.jsonl:2: no 'answer' field; set task\.answer_field"),
    ('{"answer": "2"}', {}, r"bad\.jsonl:2: no 'problem' field; set task\.problem_field"),
    ('not json', {}, r"bad\.jsonl:2: not a JSON object"),
    ('{"problem": "1+1", "answer": "no box"}', {"answer_format": "boxed"}, r"bad\.jsonl:1: .*no boxed answer"),
])
def test_bad_dataset_lines_are_named(tmp_path, line, kwargs, message):
    (tmp_path / "bad.jsonl").write_text('{"problem": "ok", "answer": "1", "unique_id": "a"}\n' + line + "\n")
    with pytest.raises(LabError, match=message):
        MathTask(str(tmp_path / "bad.jsonl"), **kwargs).problems("eval")


def test_bad_templates_and_paths(tmp_path):
    with pytest.raises(LabError, match=r"task\.prompt_template=.*has no \{problem\} placeholder"):
        MathTask("math_sample.jsonl", prompt_template="Solve it.")
    with pytest.raises(LabError, match=r"task\.path=/nope\.jsonl: no such file"):
        MathTask("/nope.jsonl").problems("eval")


def test_bad_input_from_the_command_line_is_one_line(tmp_path):
    from tests.test_configs import one_error_line, run_cli

    (tmp_path / "bad.jsonl").write_text('{"problem": "1+1"}\n')
    line = one_error_line(run_cli("task=math500", f"task.path={tmp_path}/bad.jsonl", "task.chat_tokenizer=null",
                                  f"hydra.run.dir={tmp_path}/run"))
    assert "bad.jsonl:1: no 'answer' field" in line
    line = one_error_line(run_cli("task=math_sample", "task.prompt_template=nothing", f"hydra.run.dir={tmp_path}/r"))
    assert "task.prompt_template" in line and "{problem}" in line


def test_prompts_are_rendered_once_with_the_tokenizers_chat_template(chat_tokenizer):
    task = MathTask("math_sample.jsonl", prompt_template="Solve: {problem}", chat_tokenizer=str(chat_tokenizer))
    p = task.problems("eval")[1]
    assert p.prompt == ("<|system|>\nPlease reason step by step, and put your final answer within \\boxed{}.\n"
                        "<|user|>\nSolve: Solve for $x$: $3x-7=11$.\n<|assistant|>\n")
    plain = MathTask("math_sample.jsonl", chat_tokenizer=None).problems("eval")[1]
    assert plain.prompt == "Solve for $x$: $3x-7=11$."


def test_a_tokenizer_without_chat_template_is_named(tmp_path):
    from search.training.tokenizer import save_tokenizer

    save_tokenizer(tmp_path)
    with pytest.raises(LabError, match="has no chat template"):
        MathTask("math_sample.jsonl", chat_tokenizer=str(tmp_path)).problems("eval")


@pytest.mark.skipif(not (SHARED / "math500/test.jsonl").exists(), reason="../shared/data is not on this machine")
def test_real_math500_answers_grade_against_their_own_solutions():
    task = MathTask(str(SHARED / "math500/test.jsonl"))
    problems = task.problems("eval")
    rows = [json.loads(line) for line in (SHARED / "math500/test.jsonl").open()]
    assert len(problems) == 500 and problems[0].metadata["level"] in range(1, 6)
    assert all(task.grade(p, last_boxed(r["solution"])) for p, r in zip(problems, rows))
    # and not against the others' answers (problems whose answers are the same object excepted)
    crossed = [(p.reference, q.reference) for p, q in zip(problems, problems[1:] + problems[:1])
               if task.grade(p, q.reference)]
    assert all(equivalent(b, a) for a, b in crossed) and len(crossed) <= 5, crossed


@pytest.mark.skipif(not (SHARED / "gsm8k/test.jsonl").exists(), reason="../shared/data is not on this machine")
def test_real_gsm8k_answers_parse():
    task = MathTask(str(SHARED / "gsm8k/test.jsonl"), problem_field="question", answer_format="gsm8k", id_field=None,
                    metadata_fields=())
    problems = task.problems("eval")
    assert len(problems) == 1319 and all(p.reference.lstrip("-").replace(".", "").isdigit() for p in problems)
    assert task.grade(problems[0], "18") and not task.grade(problems[0], "19")


@pytest.mark.server
def test_best_of_k_end_to_end_on_the_sample_with_a_chat_template(chat_tokenizer, tmp_path):
    
    from search.build import compose
    from search.engine.runner import run

    cfg = compose(["task=math_sample", f"task.chat_tokenizer={chat_tokenizer}", "task.prompt_template='Q:{problem}'",
                   "n_problems=6", "strategy.budget=4", "strategy.max_tokens=48", "cache_path=null"])
    summary = run(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert summary["task"] == "math_sample" and summary["n_problems"] == 6 and len(records) == 6
    assert [r["k"] for r in summary["budgets"]] == [1, 2, 4]
    # the tiny policy knows no LaTeX: every answer is graded (by math-verify) and wrong, which is the finding
    assert all(not r["correct"] for r in records) and summary["budgets"][-1]["coverage"] == 0.0
    # the chat-rendered prompts were sent: one request per problem, each longer than the system message alone
    from search.tasks.math import SYSTEM_PROMPT

    assert summary["ledger_totals"]["prompt_tokens"] > 6 * len(SYSTEM_PROMPT)


def test_a_hub_dataset_is_loaded_by_name_config_and_split(monkeypatch):
    """``hf:NAME[:CONFIG]`` goes to datasets.load_dataset (a stand-in module here: no network); rows keep their
    order and are named by path and index; without the library the error says how to get it."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config, split: calls.append((name, config, split)) or [
        {"problem": "1+1?", "answer": "2", "unique_id": "a"}, {"problem": "2+2?", "answer": "4", "unique_id": "b"}]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    task = MathTask("hf:org/set:main", split="train")
    assert [p.id for p in task.problems("eval")] == ["a", "b"] and calls == [("org/set", "main", "train")]
    MathTask("hf:org/other").problems("eval")
    assert calls[-1] == ("org/other", None, "test")
    monkeypatch.setitem(sys.modules, "datasets", None)                 # not installed
    with pytest.raises(LabError, match=r"task.path=hf:org/set needs the datasets library: pip install datasets"):
        MathTask("hf:org/set").problems("eval")
