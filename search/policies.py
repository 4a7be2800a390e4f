"""Build the run's policy client: a server this process starts and owns, or servers given by URL.

    python -m search.run policy=tiny                     # the shipped checkpoint on a managed local vLLM server
    python -m search.run policy=remote policy.base_urls=[http://10.0.0.5:8000] policy.model=my-model \\
        policy.n_params=1500000000

Both return an ``OpenAIPolicy``; only how the base URLs are found differs. A managed server is shared by every job
of a multirun in the same process (``search.server.get_server``), so weights load once per sweep.
"""
from __future__ import annotations

from typing import Sequence

from search import checkpoint as ckpt
from search.contracts import LabError
from search.policy import OpenAIPolicy
from search.server import get_server


def managed_policy(checkpoint: str = "tiny-policy", served_model_name: str | None = None, dtype: str = "float32",
                   max_model_len: int = 256, startup_timeout_s: float = 300.0, kv_cache_gib: int = 1,
                   extra_args: Sequence[str] = (), max_concurrency: int = 64, timeout_s: float = 120.0,
                   max_retries: int = 4, log_dir: str | None = None) -> OpenAIPolicy:
    """Start (or reuse) a vLLM server on ``checkpoint`` (a directory or a shipped name) and return its client."""
    path = ckpt.resolve(checkpoint)
    digest = ckpt.checkpoint_hash(path)
    name = served_model_name or (checkpoint if checkpoint in ckpt.SHIPPED else path.name)
    server = get_server(path, served_model_name=name, dtype=dtype, max_model_len=max_model_len,
                        startup_timeout_s=startup_timeout_s, extra_args=tuple(extra_args),
                        env={"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}, log_path=log_dir)
    policy = OpenAIPolicy(base_urls=[server.base_url], model=name, model_id=f"{name}@{digest}",
                          n_params=ckpt.count_params(path), max_concurrency=max_concurrency, timeout_s=timeout_s,
                          max_retries=max_retries)
    policy.checkpoint_hash = digest
    return policy


def remote_policy(base_urls: Sequence[str], model: str, n_params: int | None = None, revision: str | None = None,
                  api_key: str | None = None, max_concurrency: int = 64, timeout_s: float = 120.0,
                  max_retries: int = 4) -> OpenAIPolicy:
    """A client for already-running OpenAI-compatible servers (one or more replicas of the same model)."""
    if not base_urls:
        raise LabError("policy.base_urls is empty: give at least one server URL, e.g. "
                       "policy.base_urls=[http://127.0.0.1:8000]")
    if not n_params:
        raise LabError("policy.n_params is not set: give the served model's parameter count (the ledger's FLOPs "
                       "formula needs it), e.g. policy.n_params=1500000000")
    model_id = f"{model}@{revision}" if revision else model
    return OpenAIPolicy(base_urls=list(base_urls), model=model, model_id=model_id, n_params=int(n_params),
                        api_key=api_key, max_concurrency=max_concurrency, timeout_s=timeout_s,
                        max_retries=max_retries)
