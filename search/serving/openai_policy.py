"""The policy client: vLLM's OpenAI-compatible completions endpoint, over one or more replicas.

    from search.serving.openai_policy import OpenAIPolicy
    policy = OpenAIPolicy(["http://127.0.0.1:8000"], model="tiny-policy", model_id="tiny-policy@abc", n_params=10**6)
    [gen] = policy.generate(["Q:17+5\\n"], SamplingParams(n=4, seed=1))

Only the stable, documented fields are sent (prompt, n, temperature, top_p, max_tokens, stop, seed) plus one vLLM
extra, ``return_token_ids``: ``usage`` only totals the tokens of all n samples, and the lab charges each sample its
own length. A server that ignores or rejects it is asked for ``logprobs=0`` instead (one token entry per generated
token). With ``logprobs=N`` every request also asks for the top N logprobs of each generated token, and every
completion carries them (``TokenLogprobs``: the sampled token's and the top N's), for confidence verifiers that read
the policy itself (``verifiers/confidence.py``). Requests go out concurrently on a bounded thread pool, each to the replica with the fewest requests in
flight; transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with exponential backoff.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from search.contracts import Completion, Generation, LabError, SamplingParams, TokenLogprobs, Usage, per_prompt
from search.serving.http import Replicas

VLLM_EXTRAS = {"return_token_ids": True}
"""Engine-specific request fields (vLLM >= 0.10): the generated token ids, so each sample's length is exact."""
LOGPROBS_EXTRAS = {"logprobs": 0}
"""The portable fallback: ``logprobs.tokens`` has one entry per generated token."""


class OpenAIPolicy:
    """A Policy backed by OpenAI-compatible servers that all serve the same model (replicas)."""

    def __init__(self, base_urls: Sequence[str], model: str, model_id: str, n_params: int,
                 api_key: str | None = None, max_concurrency: int = 64, timeout_s: float = 120.0,
                 max_retries: int = 4, backoff_s: float = 0.5, logprobs: int | None = None):
        """``base_urls``: one or more replicas (see ``search.serving.http.Replicas``); ``model``: the served model name
        sent with every request; ``model_id``: the model's identity for records and cache keys; ``n_params``:
        parameter count for the FLOPs formula; ``api_key``: sent as a Bearer token when given;
        ``max_concurrency``: requests in flight at once over all replicas and all callers; ``timeout_s``,
        ``max_retries``, ``backoff_s``: per request, as in ``Replicas``; ``logprobs``: the top N logprobs to ask for
        per generated token (None: none)."""
        self.http = Replicas(base_urls, "policy", model, "policy", api_key=api_key, max_concurrency=max_concurrency,
                             timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s)
        """The replicas and the retrying POST."""
        self.base_urls = self.http.base_urls
        self.model, self.model_id, self.n_params = model, model_id, n_params
        self.logprobs = logprobs
        """Top logprobs per generated token asked for (None: none); the generation cache keys on it."""
        self.token_count_source = "token_ids"
        """How per-sample token counts are obtained: ``token_ids`` (vLLM) or ``logprobs`` (any server); switches
        to ``logprobs`` by itself when a server does not return token ids."""
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="policy")

    @property
    def requests_per_replica(self) -> tuple[int, ...]:
        """HTTP requests sent to each entry of ``base_urls`` so far, in that order (retries included)."""
        return self.http.sent

    def _post(self, body: dict) -> dict:
        return self.http.post("/v1/completions", body)

    def _request(self, prompt: str, params: SamplingParams) -> dict:
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": params.n,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_tokens, "stop": list(params.stop)}
        if params.seed is not None:
            body["seed"] = params.seed
        if self.logprobs is not None:
            body["logprobs"] = self.logprobs
        if self.token_count_source == "token_ids":
            try:
                data = self._post({**body, **VLLM_EXTRAS})
            except LabError as err:
                if "return_token_ids" not in str(err):
                    raise
                data = None  # a strict server that rejects the unknown field
            if data is not None and all(c.get("token_ids") is not None for c in data["choices"]):
                return data
            self.token_count_source = "logprobs"
        return self._post({**LOGPROBS_EXTRAS, **body})     # keeps the logprobs asked for, if any

    def _one(self, prompt: str, params: SamplingParams) -> Generation:
        data = self._request(prompt, params)
        usage = data.get("usage") or {}
        total = int(usage.get("completion_tokens") or 0)
        comps = []
        for ch in sorted(data["choices"], key=lambda c: c.get("index", 0)):
            ids, lp = ch.get("token_ids"), ch.get("logprobs") or {}
            count = len(ids) if ids is not None else len(lp["tokens"]) if lp.get("tokens") is not None else -1
            comps.append(Completion(text=ch["text"], completion_tokens=count,
                                    finish_reason=ch.get("finish_reason") or "unknown",
                                    logprobs=self._logprobs(lp) if self.logprobs is not None else None))
        if any(c.completion_tokens < 0 for c in comps):
            # Last resort for a server with neither: one sample takes the total; several share it by text length.
            chars = sum(len(c.text) for c in comps) or 1
            comps = [Completion(c.text, round(total * len(c.text) / chars), c.finish_reason) for c in comps]
        details = usage.get("prompt_tokens_details") or {}
        return Generation(tuple(comps), Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                              cached_prompt_tokens=int(details.get("cached_tokens") or 0),
                                              completion_tokens=total))

    def _logprobs(self, lp: dict) -> TokenLogprobs:
        """The OpenAI ``logprobs`` object of one choice as ``TokenLogprobs`` (the top N of each position, highest
        first; the server may add the sampled token to them, which is dropped when it is not among the N)."""
        token = tuple(float(x) if x is not None else 0.0 for x in lp.get("token_logprobs") or ())
        top = tuple(tuple(sorted((float(v) for v in (d or {}).values()), reverse=True)[:max(1, self.logprobs)])
                    for d in lp.get("top_logprobs") or ())
        if len(top) != len(token):
            raise LabError(f"policy server returned {len(token)} token logprobs but {len(top)} top-logprob lists; it "
                           f"must follow the OpenAI completions format (or run without policy.logprobs)")
        return TokenLogprobs(token, top)

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        """``params.n`` samples of every prompt, one request per prompt sent concurrently; results in prompt order.
        ``params`` is shared by all prompts or given per prompt.

        Raises LabError when a request is rejected (4xx) or a server stays unreachable after the retries; the
        requests not yet started are then cancelled."""
        return list(self._pool.map(self._one, prompts, per_prompt(params, len(prompts))))

    def server_version(self) -> str | None:
        """The first replica's ``/version`` (vLLM reports its version there), or None when it cannot be read."""
        return (self.http.get_json("/version") or {}).get("version")

    def close(self) -> None:
        """Stop the worker threads and close the HTTP connections."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()

    def __enter__(self) -> "OpenAIPolicy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
