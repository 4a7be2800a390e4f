"""The served verifiers' rendering and parsing with no server: the generative judge (P(yes) from top logprobs) and the
process reward model (its input text, one score per step from vLLM's step pooler), each behind a scripted HTTP
transport that answers as vLLM does. Expected values are worked out by hand from the probabilities."""
from __future__ import annotations

import json
import math

import httpx
import pytest

from search.contracts import Candidate, LabError
from search.serving.http import Replicas
from search.tasks.arith import ArithTask
from verifiers.judge import GenerativeJudge
from verifiers.prm import PRMVerifier, render
from verifiers.sampled_judge import SampledJudge

TASK = ArithTask()
PROBLEM = TASK._make(17, (("+", 5), ("*", 3)))          # Q:17+5*3 -> 17+5=22, 22*3=66, A:66


def cand(text):
    return Candidate(steps=TASK.split_steps(text), answer=TASK.extract_answer(text), text=text, prompt_tokens=1,
                     completion_tokens=len(text), finish_reason="stop")


def scripted(answer):
    """A Replicas whose one server answers every POST with ``answer(path, body)``; the bodies are kept."""
    bodies = []

    def handler(request):
        body = json.loads(request.content) if request.content else None      # None: a GET
        if body is not None:
            bodies.append((request.url.path, body))
        return httpx.Response(200, json=answer(request.url.path, body))

    http = Replicas(["http://verifier.test"], "verifier", "m", "verifier", max_retries=0)
    http.clients = [httpx.Client(base_url="http://verifier.test", transport=httpx.MockTransport(handler))]
    return http, bodies


# -- the judge -----------------------------------------------------------------------------------------------------
def judge(http=None, **kw):
    return GenerativeJudge(TASK, http, "m", "m@1", 2000, **kw)


@pytest.mark.parametrize("p_yes, p_no", [(0.6, 0.2), (0.05, 0.9), (0.3, 0.3), (0.999, 0.0005)])
def test_p_yes_is_the_yes_share_of_the_two_answer_tokens(p_yes, p_no):
    j = judge(yes_token=" yes", no_token=" no")
    top = {" yes": math.log(p_yes), " no": math.log(p_no), " maybe": math.log(0.01)}
    assert j.p_yes(top) == pytest.approx(p_yes / (p_yes + p_no), rel=1e-12)


def test_p_yes_with_one_or_no_answer_token_in_the_top_list():
    j = judge(yes_token="Y", no_token="N")
    assert j.p_yes({"Y": math.log(0.1), "Z": 0.0}) == 1.0           # no is not among the top: probability 0
    assert j.p_yes({"N": math.log(0.1), "Z": 0.0}) == 0.0           # yes is not among the top
    assert j.p_yes({"Z": 0.0}) is None and j.p_yes({}) is None


def test_judge_scores_each_candidate_in_order_and_counts_undecided_ones():
    cands = [cand("17+5=22\n22*3=66\nA:66"), cand("17+5=22\n22*3=76\nA:76"), cand("17+5=2")]

    def answer(path, body):
        # choices out of order (the index says whose they are), one without either answer token, usage to charge
        tops = [{" yes": math.log(0.9), " no": math.log(0.1)}, {" yes": math.log(0.2), " no": math.log(0.6)},
                {" perhaps": -0.1}]
        choices = [{"index": i, "text": "x", "logprobs": {"top_logprobs": [tops[i]]}} for i in (2, 0, 1)]
        return {"choices": choices, "usage": {"prompt_tokens": 300, "completion_tokens": 3}}

    http, bodies = scripted(answer)
    j = judge(http, template="P:{prompt}|S:{solution}|ok?")
    scores = j.score(PROBLEM, cands)
    assert scores.final == pytest.approx((0.9, 0.25, 0.5), rel=1e-12)
    assert scores.tokens == 303 and j.undecided == 1
    [(path, body)] = bodies
    assert path == "/v1/completions" and body["max_tokens"] == 1 and body["temperature"] == 0.0
    assert body["logprobs"] == 20 and body["model"] == "m"
    assert body["prompt"] == [f"P:{PROBLEM.prompt}|S:{c.text}|ok?" for c in cands]    # steps joined by "\n"
    assert j.score(PROBLEM, []).steps == () and len(bodies) == 1                      # nothing to judge: no request


def test_a_judge_server_that_drops_answers_is_one_error():
    http, _ = scripted(lambda path, body: {"choices": [{"index": 0, "logprobs": None}], "usage": {}})
    with pytest.raises(LabError, match="returned 1 answers for 2 prompts"):
        judge(http).score(PROBLEM, [cand("A:1"), cand("A:2")])


def char_server(context, prompts):
    """A judge server with a context of ``context`` tokens whose tokenizer is one token per character after a BOS
    (id 1); every completions prompt it is sent goes into ``prompts``."""
    def answer(path, body):
        if body is None:
            return {"data": [{"id": "m", "max_model_len": context}]}
        if path == "/tokenize":
            return {"tokens": [1] * body["add_special_tokens"] + [ord(c) for c in body["prompt"]]}
        if path == "/detokenize":
            return {"prompt": "".join(map(chr, body["tokens"]))}
        assert all(len(p) + 1 + body["max_tokens"] <= context for p in body["prompt"]), "over the context"
        prompts.extend(body["prompt"])
        return {"choices": [{"index": i, "text": " yes", "finish_reason": "length",
                             "logprobs": {"top_logprobs": [{" yes": -0.1, " no": -2.3}]}}
                            for i in range(len(body["prompt"]))], "usage": {"prompt_tokens": 1}}
    return answer


def test_a_judge_prompt_past_the_context_has_its_solution_cut_to_fit():
    # 64 tokens of context, one answer token: a prompt may be 63 tokens with its BOS, so 62 characters; the long
    # candidate's solution is cut at its end to exactly that, the short one is sent as it is and never counted
    long, short = cand("17+5=22\n" * 12 + "A:22"), cand("A:66")
    prompts = []
    http, bodies = scripted(char_server(64, prompts))
    j = judge(http, template="P:{prompt}|S:{solution}|ok?")
    assert j.score(PROBLEM, [long, short]).final == pytest.approx((1 / (1 + math.exp(-2.2)),) * 2)
    head = f"P:{PROBLEM.prompt}|S:"
    assert prompts[1] == f"{head}A:66|ok?" and len(prompts[0]) == 62 and j.counts() == {"cut": 1, "undecided": 0}
    assert prompts[0] == head + long.text[:62 - len(head) - 4] + "|ok?"
    assert [b["prompt"] for path, b in bodies if path == "/tokenize"][0] == f"{head}{long.text}|ok?"
    assert not any(path == "/tokenize" and b["prompt"] == prompts[1] for path, b in bodies)
    # a sampled judge leaves room for all its verdict tokens
    prompts.clear()
    http, _ = scripted(char_server(64, prompts))
    sampled = SampledJudge(TASK, http, "m", "m@1", 1, samples=1, max_tokens=5, template="P:{prompt}|S:{solution}|ok?")
    assert sampled.score(PROBLEM, [long]).final == (1.0,)
    assert len(prompts[0]) == 64 - 1 - 5 and sampled.counts() == {"cut": 1, "abstained": 0}


def test_a_judge_server_without_tokenize_is_one_error_when_a_prompt_must_be_cut():
    def handler(request):
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 64}]})
        return httpx.Response(404, json={"detail": "Not Found"})

    http = Replicas(["http://judge.test"], "judge", "m", "verifier", max_retries=0)
    http.clients = [httpx.Client(base_url="http://judge.test", transport=httpx.MockTransport(handler))]
    with pytest.raises(LabError, match=r"^judge server of m has no /tokenize, which the judge needs to cut a prompt "
                                        r"past its context of 64 tokens: serve the judge with vLLM"):
        judge(http).score(PROBLEM, [cand("17+5=22\n" * 12 + "A:22")])


def test_a_judge_server_that_does_not_know_the_model_says_so_not_that_it_lacks_tokenize():
    def handler(request):
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"id": "served-name", "max_model_len": 64}]})
        return httpx.Response(404, json={"error": {"message": "The model `m` does not exist.", "code": 404}})

    http = Replicas(["http://judge.test"], "judge", "m", "verifier", max_retries=0)
    http.clients = [httpx.Client(base_url="http://judge.test", transport=httpx.MockTransport(handler))]
    with pytest.raises(LabError, match=r"does not exist.*check that verifier.model='m' is the server's"):
        judge(http).score(PROBLEM, [cand("17+5=22\n" * 12 + "A:22")])


def test_verdict_tokens_that_fill_the_context_are_one_error():
    http, _ = scripted(char_server(8, []))
    with pytest.raises(LabError, match=r"verifier.max_tokens=8 leaves no room for a prompt in server m's context of "
                                        r"8 tokens"):
        SampledJudge(TASK, http, "m", "m@1", 1, samples=1, max_tokens=8).score(PROBLEM, [cand("A:1")])


def test_a_judge_template_longer_than_the_context_is_one_error():
    http, _ = scripted(char_server(24, []))
    with pytest.raises(LabError, match=r"the judge prompt without its solution is 28 tokens, more than the 23 that "
                                        r"server m's context leaves for it: shorten verifier.template"):
        judge(http, template="P:{prompt}|S:{solution}|is it right?").score(PROBLEM, [cand("17+5=22\n" * 9)])


# -- the PRM -------------------------------------------------------------------------------------------------------
def test_render_puts_exactly_one_separator_after_each_step():
    sep = " ки"
    text = render("Q: ки what", ["a ки b", "c", "d ки"], sep, "\n")
    assert text == "Q: what" + "a b ки\nc ки\nd ки"
    assert text.count(sep) == 3
    # the tiny PRM's separator is a space: spaces in the prompt or the steps must not become extra score positions
    text = render("Q:1 + 1\n", ["1 + 1=2", "A:2"], " ", "\n")
    assert text == "Q:1+1\n1+1=2 \nA:2 " and text.count(" ") == 2


def prm(http, **kw):
    return PRMVerifier(TASK, http, "prm", "prm@1", 5000, step_separator=" ", **kw)


def test_prm_reads_one_score_per_step_from_the_positive_class():
    cands = [cand("17+5=22\n22*3=66\nA:66"), cand(""), cand("17+5=2")]

    def answer(path, body):
        rows = {0: [[0.1, 0.9], [0.3, 0.7], [0.0, 1.2]], 1: [[0.8, 0.2]]}    # 1.2: a rounding overshoot, clipped
        return {"data": [{"index": i, "data": rows[i]} for i in (1, 0)], "usage": {"prompt_tokens": 77}}

    http, bodies = scripted(answer)
    scores = prm(http).score(PROBLEM, cands)
    assert scores.steps == ((0.9, 0.7, 1.0), (0.0,), (0.2,)) and scores.tokens == 77
    [(path, body)] = bodies
    assert path == "/pooling" and body["model"] == "prm" and body["task"] == "token_classify"
    # the candidate without steps is not sent; the others in order, each step followed by the separator
    assert body["input"] == ["Q:17+5*3\n17+5=22 \n22*3=66 \nA:66 ", "Q:17+5*3\n17+5=2 "]
    http, _ = scripted(answer)
    assert prm(http, positive_label=0).score(PROBLEM, cands).steps == ((0.1, 0.3, 0.0), (0.0,), (0.8,))


def test_an_outcome_reward_model_on_the_pooling_server_gives_one_score_per_candidate():
    """An ORM trained on the last separator is served like a PRM but is an outcome verifier: the last step's score,
    nothing a step-wise search could read as a step score."""
    cands = [cand("17+5=22\n22*3=66\nA:66"), cand(""), cand("17+5=2")]

    def answer(path, body):
        rows = {0: [[0.1, 0.9], [0.3, 0.7], [0.6, 0.4]], 1: [[0.8, 0.2]]}
        return {"data": [{"index": i, "data": rows[i]} for i in (0, 1)], "usage": {"prompt_tokens": 50}}

    http, bodies = scripted(answer)
    orm = prm(http, outcome=True)
    scores = orm.score(PROBLEM, cands)
    assert orm.kind == "outcome" and prm(http).kind == "process"
    assert scores.steps == ((0.4,), (0.0,), (0.2,)) and scores.final == (0.4, 0.0, 0.2) and scores.tokens == 50
    assert bodies[0][1]["input"] == ["Q:17+5*3\n17+5=22 \n22*3=66 \nA:66 ", "Q:17+5*3\n17+5=2 "]


def test_prm_sends_nothing_for_candidates_without_steps():
    http, bodies = scripted(lambda path, body: pytest.fail("no request expected"))
    assert prm(http).score(PROBLEM, [cand(""), cand("")]).steps == ((0.0,), (0.0,)) and not bodies


def test_a_prm_server_without_the_step_pooler_is_one_error():
    # a pooler that returns a row per token instead of per step
    http, _ = scripted(lambda path, body: {"data": [{"index": 0, "data": [[0.5, 0.5]] * 9}]})
    with pytest.raises(LabError, match=r"returned 9 scores for 2 steps; start its server with the step pooler"):
        prm(http).score(PROBLEM, [cand("17+5=22\nA:22")])


def context_of(n, served=None):
    """A PRM server's answers: its model card (``max_model_len`` n) on GET /v1/models, ``served`` on POSTs."""
    return lambda path, body: ({"data": [{"id": "prm", "max_model_len": n}]} if body is None else served(body))


def test_a_candidate_longer_than_the_prm_context_is_cut_and_its_unread_steps_score_zero():
    # the server keeps the first max_model_len tokens (truncate_prompt_tokens=-1, truncation_side=right), so the
    # pooler scores only the separators inside them: the steps it never read score 0.0 (not vouched for), the
    # tokens charged are the ones it read, and the verifier counts the candidates it cut (candidate 0's 32 bytes can
    # fill a 32-token context; here they did)
    cands = [cand("17+5=22\n22*3=66\nA:66"), cand("17+5=2")]
    served = {0: [[0.1, 0.9], [0.3, 0.7]], 1: [[0.8, 0.2]]}                # candidate 0: 2 of its 3 separators
    http, bodies = scripted(context_of(32, lambda body: {
        "data": [{"index": i, "data": served[i]} for i in (0, 1)], "usage": {"prompt_tokens": 32 + 9}}))
    v = prm(http)
    scores = v.score(PROBLEM, cands)
    assert scores.steps == ((0.9, 0.7, 0.0), (0.2,)) and scores.tokens == 41 and v.counts() == {"cut": 1}
    [(path, body)] = bodies
    assert body["truncate_prompt_tokens"] == -1 and body["truncation_side"] == "right"
    assert len(body["input"][0].encode()) == 32
    http, _ = scripted(context_of(32, lambda body: {
        "data": [{"index": i, "data": served[i]} for i in (0, 1)], "usage": {"prompt_tokens": 32 + 9}}))
    assert prm(http, outcome=True).score(PROBLEM, cands).steps == ((0.0,), (0.2,))  # an ORM never read the end


@pytest.mark.parametrize("texts, rows, tokens, context, message", [
    # two inputs short of scores, but the request's tokens leave room for one cut input (each is exactly 32 long)
    (["17+5=22\n22*3=66\nA:66", "17+5=22\n22*3=76\nA:76"], [1, 1], 32 + 31, 32, "1 scores for 3 steps"),
    # room for two, but the 16-byte input short of its one score cannot have filled 32 tokens
    (["17+5=22\n22*3=66\nA:66", "17+5=2"], [3, 0], 32 + 32, 32, "0 scores for 1 steps"),
    # a server whose context cannot be read
    (["17+5=22\n22*3=66\nA:66"], [1], 73, None, "1 scores for 3 steps"),
])
def test_fewer_step_scores_from_inputs_that_were_not_cut_is_the_pooler_error(texts, rows, tokens, context, message):
    # a server whose step pooler reads another token than the separator, not a long candidate
    served = {"data": [{"index": i, "data": [[0.1, 0.9]] * n} for i, n in enumerate(rows)],
              "usage": {"prompt_tokens": tokens}}
    answer = context_of(context, lambda body: served) if context else (lambda path, body: served if body else {})
    http, _ = scripted(answer)
    with pytest.raises(LabError, match=rf"returned {message}; start its server with the step pooler"):
        prm(http).score(PROBLEM, [cand(t) for t in texts])


def test_a_context_read_that_failed_is_asked_again():
    # a 503 on the first /v1/models is not the server saying it has no context: the next call asks again
    answers = iter([httpx.Response(503, json={"error": "busy"}),
                    httpx.Response(200, json={"data": [{"id": "prm", "max_model_len": 32}]})])

    def handler(request):
        return next(answers)

    http = Replicas(["http://prm.test"], "reward model", "prm", "verifier", max_retries=0)
    http.clients = [httpx.Client(base_url="http://prm.test", transport=httpx.MockTransport(handler))]
    v = prm(http)
    assert v.context() is None and v.context() == 32 and v.context() == 32      # the third call sends nothing


def test_a_server_without_a_model_list_is_asked_once():
    # an OpenAI-compatible server with no /v1/models (404) has answered: the judge does not ask again on every call
    asked = []

    def handler(request):
        if request.method == "GET":
            asked.append(request.url.path)
            return httpx.Response(404, json={"detail": "Not Found"})
        body = json.loads(request.content)
        return httpx.Response(200, json={"choices": [{"index": i, "logprobs": {"top_logprobs": [{" yes": -0.1}]}}
                                                     for i in range(len(body["prompt"]))], "usage": {}})

    http = Replicas(["http://judge.test"], "judge", "m", "verifier", max_retries=0)
    http.clients = [httpx.Client(base_url="http://judge.test", transport=httpx.MockTransport(handler))]
    j = judge(http)
    for _ in range(3):
        assert j.score(PROBLEM, [cand("A:66")]).final == (1.0,)
    assert asked == ["/v1/models"] and j.context() is None


def test_prm_input_formats_lay_out_the_question_and_the_steps(tmp_path):
    """question: the problem as written, a space, the steps (Math-Shepherd); chat: the tokenizer's chat template
    over system, user and assistant turns (Qwen2.5-Math-PRM); a tokenizer without a template is one error."""
    from search.tasks.math import MathTask
    from search.training.tokenizer import save_tokenizer

    save_tokenizer(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    (tmp_path / "chat").mkdir()
    for f in (tmp_path / "tok").iterdir():
        (tmp_path / "chat" / f.name).write_text(f.read_text())
    (tmp_path / "chat" / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": template}))
    task = MathTask("math_sample.jsonl", prompt_template="Solve: {problem}\nAnswer:")
    problem = task.problems("eval", 1)[0]
    question = task.question(problem)
    assert question != problem.prompt and question in problem.prompt     # the file's words, not the chat prompt
    assert task.question(type(problem)(id="not-in-file", prompt="P?", reference="1")) == "P?"
    c = Candidate(steps=("a", "b"), answer=None, text="a\n\nb", prompt_tokens=0, completion_tokens=0,
                  finish_reason="stop")
    http, _ = scripted(lambda path, body: {})
    flat = question.replace(" ", "")
    q = PRMVerifier(task, http, "p", "p@1", 1, step_separator=" ", step_joiner="\n", input_format="question")
    assert q.render(problem, c) == f"{flat} a \nb "
    chat = PRMVerifier(task, http, "p", "p@1", 1, step_separator=" ", step_joiner="\n", input_format="chat",
                       system_prompt="S", tokenizer=tmp_path / "chat")
    assert chat.render(problem, c) == f"<system>S<user>{flat}<assistant>a \nb "
    bare = PRMVerifier(task, http, "p", "p@1", 1, step_separator=" ", step_joiner="\n", input_format="chat",
                       tokenizer=tmp_path / "tok")
    with pytest.raises(LabError, match="has no chat template; use input_format=question or prompt"):
        bare.render(problem, c)


def test_step_tag_id_is_the_separator_as_one_token_after_a_step(tmp_path):
    """The tiny tokenizer's space is token 22 (4 specials, then the space is character 18); a sentencepiece-style
    tokenizer writes Math-Shepherd's " ки" as two tokens alone and as one after a step's text, which is the one the
    pooler must read; a separator that is two tokens even after text is one error."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from search.training.tokenizer import save_tokenizer
    from verifiers.prm import step_tag_id

    save_tokenizer(tmp_path / "tiny")
    assert step_tag_id(tmp_path / "tiny", " ") == 22
    with pytest.raises(LabError, match=r"step_separator=' \+' is 2 tokens in .*exactly one token"):
        step_tag_id(tmp_path / "tiny", " +")
    vocab = {"▁": 0, "▁ки": 1, "▁x": 2, "[UNK]": 3}
    sp = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # as Llama's and Mistral's tokenizer.json: prepend "▁" to the text, spaces become "▁", split before each "▁"
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    (tmp_path / "sp").mkdir()
    sp.save(str(tmp_path / "sp" / "tokenizer.json"))
    assert sp.encode(" ки", add_special_tokens=False).ids == [0, 1]          # two tokens alone
    assert step_tag_id(tmp_path / "sp", " ки") == 1                          # "▁ки", as after a step
