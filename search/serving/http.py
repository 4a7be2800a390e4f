"""One HTTP client for every vLLM server the lab talks to (policy, reward model, judge): replicas, retries, errors.

A ``Replicas`` object holds one keep-alive connection pool per base URL and sends each request to the replica with
the fewest requests in flight (ties round-robin). Transient failures (connection errors, timeouts, 408, 429, 5xx)
are retried with jittered exponential backoff; anything else becomes one LabError line that names the server, what
it said, and the fix.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Sequence

import httpx

from search.contracts import LabError

# httpx logs every request at INFO, and Hydra sets the root logger to INFO: one line per request drowns the run.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
"""HTTP statuses worth retrying."""


def one_line(text: object, limit: int = 300) -> str:
    """Text collapsed to one line of at most ``limit`` characters (for error messages)."""
    return " ".join(str(text).split())[:limit]


def server_message(resp: httpx.Response) -> str:
    """The error message of a vLLM/OpenAI error body (``{"error": {"message": ...}}`` or ``{"message": ...}``)."""
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
    except ValueError:
        msg = resp.text
    return one_line(msg or resp.reason_phrase)


class Replicas:
    """Servers that all serve the same model, and the retrying POST that spreads requests over them."""

    def __init__(self, base_urls: Sequence[str], what: str, model: str, config_key: str,
                 api_key: str | None = None, max_concurrency: int = 64, timeout_s: float = 120.0,
                 max_retries: int = 4, backoff_s: float = 0.5):
        """``base_urls``: ``http://host:port`` (a trailing ``/v1`` is dropped; a URL may appear twice); ``what``:
        the server's role in error messages (``policy``, ``reward model``); ``model``: its served name;
        ``config_key``: the config group that sets the URLs (``policy``, ``verifier``), named in fixes;
        ``max_concurrency``: connections per replica; ``timeout_s``: per request; ``max_retries``: retries of a
        transient failure; ``backoff_s``: the first retry's wait, doubled per retry (capped at 8 s, jittered)."""
        self.base_urls = [u.rstrip("/").removesuffix("/v1") for u in base_urls]
        if not self.base_urls:
            raise LabError(f"no {what} server URL given: set {config_key}.base_urls, e.g. [http://127.0.0.1:8000]")
        self.what, self.model, self.config_key = what, model, config_key
        self.max_retries, self.backoff_s = max_retries, backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self.clients = [httpx.Client(base_url=u, headers=headers, timeout=timeout_s, limits=limits)
                        for u in self.base_urls]
        """One connection pool per replica, in ``base_urls`` order."""
        self._lock = threading.Lock()
        self._in_flight = [0] * len(self.base_urls)
        self._sent = [0] * len(self.base_urls)
        self._next = 0

    @property
    def sent(self) -> tuple[int, ...]:
        """HTTP requests sent to each entry of ``base_urls`` so far, in that order (retries included)."""
        with self._lock:
            return tuple(self._sent)

    def _pick(self) -> int:
        # Fewest in flight; ties go round-robin from the replica after the last one chosen.
        with self._lock:
            n = len(self.base_urls)
            i = min(((self._next + k) % n for k in range(n)), key=lambda j: self._in_flight[j])
            self._next = (i + 1) % n
            self._in_flight[i] += 1
            self._sent[i] += 1
            return i

    def post(self, path: str, body: dict) -> dict:
        """POST ``body`` to ``path`` on one replica and return the JSON answer; LabError when the server rejects
        the request (4xx) or stays unreachable after the retries."""
        last, url = "", self.base_urls[0]
        for attempt in range(self.max_retries + 1):
            i = self._pick()
            url = self.base_urls[i]
            try:
                resp = self.clients[i].post(path, json=body)
                if resp.status_code == 200:
                    return resp.json()
                last = f"HTTP {resp.status_code}: {server_message(resp)}"
                if resp.status_code not in RETRY_STATUS:
                    fix = (f"check that {self.config_key}.model='{self.model}' is the server's --served-model-name"
                           if resp.status_code == 404 else "fix the request settings it names")
                    raise LabError(f"{self.what} server {url} rejected the request ({last}); {fix}")
            except httpx.TransportError as err:
                last = f"{type(err).__name__}: {one_line(err) or 'no detail'}"
            finally:
                with self._lock:
                    self._in_flight[i] -= 1
            if attempt < self.max_retries:
                time.sleep(min(8.0, self.backoff_s * 2 ** attempt) * (0.5 + random.random()))
        tries = self.max_retries + 1
        raise LabError(f"{self.what} server {url} failed after {tries} {'try' if tries == 1 else 'tries'} ({last}); "
                       f"is the server running? check {self.config_key}.base_urls")

    def ask(self, path: str, timeout_s: float = 5.0) -> tuple[bool, dict | None]:
        """(answered, JSON) of a GET of ``path`` on the first replica, for optional facts: ``answered`` is False when
        asking again later may tell more (no connection, a timeout, a status ``post`` would retry); the JSON is None
        unless the answer is a 200 with a JSON body."""
        try:
            resp = self.clients[0].get(path, timeout=timeout_s)
        except Exception:  # noqa: BLE001 - an optional fact that cannot be read now is recorded as missing
            return False, None
        if resp.status_code in RETRY_STATUS:
            return False, None
        try:
            return True, (resp.json() if resp.status_code == 200 else None)
        except ValueError:                     # a 200 whose body is not JSON: an answer that says nothing
            return True, None

    def get_json(self, path: str, timeout_s: float = 5.0) -> dict | None:
        """GET ``path`` from the first replica; None when it cannot be read (for optional facts like /version)."""
        return self.ask(path, timeout_s)[1]

    def close(self) -> None:
        """Close every replica's connections."""
        for client in self.clients:
            client.close()


SPECIAL_TOKENS = 8
"""Tokens a tokenizer may add to a text beyond one per UTF-8 byte (BOS and the like): a text of fewer bytes than a
context less these cannot fill it (a served verifier asks the server to count only texts that could)."""


class ServedModel:
    """Base for a verifier behind a server: ``http`` is the ``Replicas``, built on first use when the constructor got
    a callable instead (a managed server then starts on the first score, and never for a run that does not score)."""

    model: str
    """The served name the requests ask for (set by the subclass)."""

    def __init__(self, http: "Replicas | Callable[[], Replicas]"):
        self._http, self._http_lock = http, threading.Lock()
        self._context: int | None = None
        self._context_read = False
        self._context_lock = threading.Lock()

    def context(self) -> int | None:
        """The server's context in tokens (``max_model_len`` of ``model`` in its ``/v1/models``); None when the server
        does not say. Kept once the server has answered (a 404 too); a transient failure (no connection, a timeout, a
        status Replicas retries) is asked again next time."""
        http = self.http
        with self._context_lock:
            if not self._context_read:
                answered, answer = http.ask("/v1/models")
                if not answered:
                    return None
                cards = (answer.get("data") if isinstance(answer, dict) else None) or []
                lengths = [c.get("max_model_len") for c in cards if c.get("id") == self.model] or \
                    [c.get("max_model_len") for c in cards[:1]]
                self._context = int(lengths[0]) if lengths and lengths[0] else None
                self._context_read = True
            return self._context

    @property
    def http(self) -> Replicas:
        """The server's client (starting a managed server on first use)."""
        with self._http_lock:
            if not isinstance(self._http, Replicas):
                self._http = self._http()
            return self._http
