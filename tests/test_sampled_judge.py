"""The sampled judge (verifiers/sampled_judge.py) on a fake server: K verdicts per candidate, voted, every token
charged; and the figure of the policy/verifier compute split."""
import pandas as pd
import pytest

from search.contracts import Candidate, LabError, Problem
from search.serving.http import Replicas
from verifiers.sampled_judge import SampledJudge


class Task:
    step_delimiter = "\n"


TASK = Task()


class FakeServer(Replicas):
    """Answers every prompt with scripted verdict texts, and records the request."""

    def __init__(self, verdicts):
        self.verdicts, self.bodies = verdicts, []

    def post(self, path, body):
        self.bodies.append(body)
        choices = [{"index": i * body["n"] + j, "text": text, "finish_reason": finish}
                   for i, _ in enumerate(body["prompt"]) for j, (text, finish) in enumerate(self.verdicts[i])]
        return {"choices": choices[::-1],                                  # any order: index says which is which
                "usage": {"prompt_tokens": 10 * len(body["prompt"]), "completion_tokens": len(choices)}}


def _cands(n):
    return tuple(Candidate(steps=(f"{i}",), answer=f"{i}", text=f"{i}", prompt_tokens=1, completion_tokens=1,
                           finish_reason="stop") for i in range(n))


def test_verdicts_are_voted_per_candidate_and_every_token_is_charged():
    yes, no, other = ("", "stop"), ("\n", "length"), ("7", "length")
    server = FakeServer([[yes, yes, no], [no, no, no], [other, other, other]])
    judge = SampledJudge(TASK, server, "m", "m@1", 1000, samples=3, seed=5, template="{prompt}{solution}",
                         yes_token="</s>", no_token="\n")
    scores = judge.score(Problem("p", "Q", "1"), _cands(3))
    assert scores.final == pytest.approx((2 / 3, 0.0, 0.5)) and judge.abstained == 1
    assert scores.tokens == 30 + 9
    assert server.bodies[0]["n"] == 3 and server.bodies[0]["temperature"] == 1.0 and "seed" in server.bodies[0]


def test_word_verdicts_of_an_instruction_model():
    server = FakeServer([[(" yes", "length"), (" no", "length")]])
    judge = SampledJudge(TASK, server, "m", "m@1", 1, samples=2)
    assert judge.score(Problem("p", "Q", "1"), _cands(1)).final == (0.5,)


def test_a_server_that_drops_verdicts_and_bad_settings_are_one_line():
    server = FakeServer([[("", "stop")]])
    judge = SampledJudge(TASK, server, "m", "m@1", 1, samples=2, yes_token="</s>", no_token="\n",
                         template="{solution}")
    with pytest.raises(LabError, match="returned 1 verdicts for 1 prompts x 2 samples"):
        judge.score(Problem("p", "Q", "1"), _cands(1))
    for kwargs, field in (({"samples": 0}, "samples"), ({"temperature": 0.0}, "temperature"),
                          ({"max_tokens": 0}, "max_tokens")):
        with pytest.raises(LabError, match=f"verifier.{field}="):
            SampledJudge(TASK, server, "m", "m@1", 1, **kwargs)


def test_the_split_figure_draws_one_line_per_verdict_count(tmp_path):
    from plots.split_curves import accuracy_vs_split

    rows = [{"verifier": "sampled_judge", "verifier.samples": K, "selection": "argmax", "k": k,
             "accuracy": 0.5 + 0.01 * k, "accuracy_lo": 0.45, "accuracy_hi": 0.6 + 0.01 * k,
             "flops": 1e6 * k * (1 + K)} for K in (1, 4) for k in (1, 4, 16)]
    [figure] = accuracy_vs_split(pd.DataFrame(rows), tmp_path)
    assert all(p.exists() for p in figure.paths)
    assert accuracy_vs_split(pd.DataFrame(rows).drop(columns="verifier.samples"), tmp_path) == []


def test_a_long_solution_is_cut_to_the_context():
    server = FakeServer([[("", "stop")]])
    judge = SampledJudge(TASK, server, "m", "m@1", 1, samples=1, template="{prompt}{solution}", yes_token="</s>",
                         no_token="\n", max_prompt_chars=20)
    long = Candidate(steps=("x" * 500,), answer=None, text="x" * 500, prompt_tokens=1, completion_tokens=500,
                     finish_reason="length")
    judge.score(Problem("p", "Q:1+1\n", "2"), [long])
    assert server.bodies[0]["prompt"] == ["Q:1+1\n" + "x" * 14]


def test_the_settings_figure_is_drawn_only_for_plain_sweeps_of_three_or_more_settings(tmp_path):
    from plots.settings_curves import settings_vs_k

    def rows(measures, noise="none", strategies=("best_of_k",)):
        return pd.DataFrame([{"verifier": "confidence", "noise": noise, "strategy": s, "verifier.measure": m,
                              "selection": rule, "k": k, "accuracy": 0.5, "accuracy_lo": 0.4, "accuracy_hi": 0.6}
                             for s in strategies for m in measures for rule in ("argmax", "majority", "coverage")
                             for k in (1, 4, 16)])

    [figure] = settings_vs_k(rows(["a", "b", "c"]), tmp_path)
    assert figure.name == "settings_vs_k" and all(p.exists() for p in figure.paths)
    assert settings_vs_k(rows(["a", "b"]), tmp_path) == []                         # accuracy_vs_compute draws these
    assert settings_vs_k(rows(["a", "b", "c"], noise="flip"), tmp_path) == []      # the noise figures do
    assert settings_vs_k(rows(["a", "b", "c"], strategies=("best_of_k", "beam")), tmp_path) == []
