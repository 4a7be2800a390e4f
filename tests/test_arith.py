"""The arithmetic task: generator, splits, extractor, grader and step checker, including malformed model output."""
import pytest

from search.contracts import LabError
from search.tasks.arith import ArithTask, Difficulty, _is_eval


@pytest.fixture(scope="module")
def task():
    return ArithTask(eval_size=200)


def test_eval_split_is_fixed_and_sized(task):
    a, b = task.problems("eval"), ArithTask(eval_size=200).problems("eval")
    assert [p.id for p in a] == [p.id for p in b]
    assert len({p.id for p in a}) == 200
    assert [p.id for p in task.problems("eval", 10)] == [p.id for p in a[:10]]


def test_train_and_eval_are_disjoint(task):
    eval_questions = {p.metadata["question"] for p in task.problems("eval")}
    train = ArithTask(Difficulty(min_ops=1, max_ops=2), train_seed=7).problems("train", 30000)
    assert not eval_questions & {p.metadata["question"] for p in train}
    assert all(not _is_eval(p.metadata["question"]) for p in train)
    assert all(_is_eval(q) for q in eval_questions)


def test_difficulty_knobs_are_respected():
    t = ArithTask(Difficulty(min_ops=3, max_ops=4, max_addend=9, max_factor=3, mul_weight=0.0), eval_size=50)
    for p in t.problems("eval"):
        assert 3 <= p.metadata["n_ops"] <= 4 and p.metadata["n_mul"] == 0
        assert all(int(x) <= 9 for x in p.metadata["question"].replace("-", "+").split("+")[1:])


@pytest.mark.parametrize("bad", [dict(min_ops=0), dict(min_ops=5, max_ops=2), dict(max_addend=100),
                                 dict(max_factor=1), dict(mul_weight=1.5), dict(big_addend_weight=-0.1)])
def test_bad_difficulty_is_a_lab_error(bad):
    with pytest.raises(LabError):
        Difficulty(**bad)


def test_reference_solution_grades_and_checks(task):
    for p in task.problems("eval", 50):
        text = task.solution(p)
        steps = task.split_steps(text)
        assert len(steps) == p.metadata["n_ops"] + 1
        assert all(task.check_steps(p, steps))
        assert all(task.step_is_arithmetic(s) for s in steps[:-1])
        assert task.grade(p, task.extract_answer(text))
        assert p.prompt.startswith("Q:") and p.prompt.endswith("\n")


def test_worked_example():
    t = ArithTask()
    p = t._make(17, (("+", 5), ("*", 3), ("-", 8)))
    assert t.solution(p) == "17+5=22\n22*3=66\n66-8=58\nA:58"
    assert p.reference == "58"
    wrap = t._make(5, (("-", 8), ("*", 7)))
    assert t.solution(wrap) == "5-8=97\n97*7=79\nA:79"


@pytest.mark.parametrize("text,answer", [
    ("17+5=22\nA:22", "22"),
    ("A:7\n", "7"),
    ("A:07", "7"),
    ("", None),
    ("17+5=22", None),
    ("A:", None),
    ("A:2x", None),
    ("A:1234", None),
    ("A: 22", None),
    ("A:22\n17+5=22", None),        # text after the answer line
    ("Q:A:22A:", None),
])
def test_extract_answer_handles_malformed_output(text, answer):
    assert ArithTask().extract_answer(text) == answer


def test_grade_rejects_missing_and_wrong_answers():
    t = ArithTask()
    p = t._make(17, (("+", 5),))
    assert t.grade(p, "22") and t.grade(p, "022")
    assert not t.grade(p, None) and not t.grade(p, "23") and not t.grade(p, "") and not t.grade(p, "2x")
    # the answer line allows three digits: 122 is not 22 (the task's mod 100 is applied by the solver, not the
    # grader), nor is 222, 922 or 2
    assert t.extract_answer("A:122") == "122"
    for wrong in ("122", "222", "922", "2", "-22", "22.0", " 2 2"):
        assert not t.grade(p, wrong), wrong


def test_grade_compares_with_the_reference_of_its_own_problem():
    t = ArithTask()
    for p in t.problems("eval", 30):
        ref = int(p.reference)
        assert t.grade(p, str(ref)) and t.grade(p, f"0{ref}")
        assert not t.grade(p, str((ref + 1) % 100)) and not t.grade(p, str(ref + 100))


def test_step_checker_marks_each_step():
    t = ArithTask()
    p = t._make(17, (("+", 5), ("*", 3), ("-", 8)))
    assert t.check_steps(p, ["17+5=22", "22*3=66", "66-8=58", "A:58"]) == (True, True, True, True)
    # a wrong step, then a step that is right arithmetic from the wrong value: both are off the reference path
    assert t.check_steps(p, ["17+5=23", "23*3=69", "66-8=58"]) == (False, False, True)
    assert t.check_steps(p, ["17+5=22", "garbage", "", "A:58", "A:58"]) == (True, False, False, True, False)
    assert t.check_steps(p, []) == ()
    assert not t.step_is_arithmetic("17+5=23") and not t.step_is_arithmetic("17+5") and t.step_is_arithmetic("5-8=97")


def test_unknown_split_is_a_lab_error(task):
    with pytest.raises(LabError, match="unknown split"):
        task.problems("test")
    with pytest.raises(LabError, match="endless"):
        task.problems("train")
