"""Build the run's policy client: a server this process starts and owns, or servers given by URL.

    python -m search.run policy=tiny                     # the shipped checkpoint on a managed local vLLM server
    python -m search.run policy=remote policy.base_urls=[http://10.0.0.5:8000] policy.model=my-model \\
        policy.n_params=1500000000

Both generate through an ``OpenAIPolicy``; only how the base URLs are found differs. A managed server starts on the
first generation request (a run served entirely from the generation cache never loads the model) and is shared by
every job of a multirun in the same process (``search.serving.vllm_server.get_server``), so weights load once per sweep.
"""
from __future__ import annotations

import threading
import time
from typing import Mapping, Sequence

from search.serving import checkpoint as ckpt
from search.contracts import LabError
from search.serving.openai_policy import OpenAIPolicy
from search.serving.vllm_server import TINY_SERVER_ARGS, TINY_SERVER_ENV, ManagedServer, get_server, server_env


class ManagedPolicy:
    """A client for a managed server that starts the server on the first generation request, so a run whose pools
    all come from the generation cache never loads the model. Its identity is known without the server."""

    def __init__(self, start, model_id: str, n_params: int, checkpoint_hash: str, server_flags: Sequence[str] = (),
                 logprobs: int | None = None):
        self._start, self._client, self._lock = start, None, threading.Lock()
        self.logprobs = logprobs
        """Top logprobs per generated token the client asks for (None: none); part of the generation cache key."""
        self.model_id, self.n_params, self.checkpoint_hash = model_id, n_params, checkpoint_hash
        self.server_flags = list(server_flags)
        """The vLLM server's command-line flags (after ``--model PATH``, port excluded), recorded in every summary."""
        self.startup_s = 0.0
        """Seconds this client waited for its server to start (0 when the server was already warm or never used)."""

    @property
    def client(self) -> OpenAIPolicy:
        """The live client, starting the server if it is not running yet."""
        with self._lock:
            if self._client is None:
                t0 = time.time()
                self._client = self._start()
                self.startup_s = time.time() - t0
            return self._client

    def generate(self, prompts, params):
        return self.client.generate(prompts, params)

    def server_version(self) -> str | None:
        """The server's vLLM version, or None when this run never needed the server."""
        return self._client.server_version() if self._client is not None else None

    @property
    def base_urls(self) -> list[str]:
        return self.client.base_urls


def managed_policy(checkpoint: str = "tiny-policy", served_model_name: str | None = None, dtype: str = "float32",
                   max_model_len: int = 256, startup_timeout_s: float = 300.0, kv_cache_gib: int = 1,
                   block_size: int | None = 32, max_num_seqs: int | None = 256,
                   extra_args: Sequence[str] = TINY_SERVER_ARGS, env: Mapping[str, str] | None = TINY_SERVER_ENV,
                   max_concurrency: int = 64, timeout_s: float = 120.0,
                   max_retries: int = 4, log_dir: str | None = None, logprobs: int | None = None) -> ManagedPolicy:
    """A policy on a vLLM server for ``checkpoint`` (a directory or a shipped name), started on first use (or
    reused: one warm server per checkpoint and options in this process). ``env``: extra environment of the server
    process (e.g. ``VLLM_ENABLE_V1_MULTIPROCESSING``). ``logprobs``: ask for the top N logprobs of every generated
    token (vLLM serves at most 20 unless started with ``--max-logprobs``)."""
    check_logprobs(logprobs)
    path = ckpt.resolve(checkpoint)
    digest = ckpt.checkpoint_hash(path)
    name = served_model_name or (checkpoint if checkpoint in ckpt.SHIPPED else path.name)
    model_id, n_params = f"{name}@{digest}", ckpt.count_params(path)

    env = server_env(kv_cache_gib, env)
    options = dict(served_model_name=name, dtype=dtype, max_model_len=max_model_len,
                   startup_timeout_s=startup_timeout_s, block_size=block_size, max_num_seqs=max_num_seqs,
                   extra_args=tuple(extra_args), env=env, log_path=log_dir)

    def start() -> OpenAIPolicy:
        server = get_server(path, **options)
        return OpenAIPolicy(base_urls=[server.base_url], model=name, model_id=model_id, n_params=n_params,
                            max_concurrency=max_concurrency, timeout_s=timeout_s, max_retries=max_retries,
                            logprobs=logprobs)

    flags = ManagedServer(str(path), port=0, **{k: v for k, v in options.items() if k != "log_path"}).command()
    flags = flags[flags.index("--model") + 2:]
    flags = [f for i, f in enumerate(flags) if f != "--port" and (i == 0 or flags[i - 1] != "--port")]
    return ManagedPolicy(start, model_id, n_params, digest, [*flags, *(f"{k}={v}" for k, v in env.items())],
                         logprobs)


def check_logprobs(logprobs) -> None:
    """Refuse a ``policy.logprobs`` that is not null or an integer >= 0, with one line."""
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 0):
        raise LabError(f"policy.logprobs={logprobs!r} must be null (no logprobs) or an integer >= 0 (top alternatives "
                       f"per token), e.g. policy.logprobs=20")


def remote_policy(base_urls: Sequence[str], model: str, n_params: int | None = None, revision: str | None = None,
                  checkpoint: str | None = None, api_key: str | None = None, max_concurrency: int = 64,
                  timeout_s: float = 120.0, max_retries: int = 4, logprobs: int | None = None) -> OpenAIPolicy:
    """A client for already-running OpenAI-compatible servers (one or more replicas of the same model).

    ``checkpoint``, when the servers serve a checkpoint this machine also has (a directory or a shipped name), fills
    in ``revision`` (its content hash, so the model identity and the generation cache are the same as with a managed
    server) and ``n_params``."""
    if checkpoint:
        path = ckpt.resolve(checkpoint)
        revision = revision or ckpt.checkpoint_hash(path)
        n_params = n_params or ckpt.count_params(path)
    if not base_urls:
        raise LabError("policy.base_urls is empty: give at least one server URL, e.g. "
                       "policy.base_urls=[http://127.0.0.1:8000]")
    if not n_params:
        raise LabError("policy.n_params is not set: give the served model's parameter count (the ledger's FLOPs "
                       "formula needs it), e.g. policy.n_params=1500000000")
    check_logprobs(logprobs)
    model_id = f"{model}@{revision}" if revision else model
    return OpenAIPolicy(base_urls=list(base_urls), model=model, model_id=model_id, n_params=int(n_params),
                        api_key=api_key, max_concurrency=max_concurrency, timeout_s=timeout_s,
                        max_retries=max_retries, logprobs=logprobs)
