"""The generation cache: one SQLite database (WAL mode) shared by every job of a sweep.

    python -m search.run cache_path=.lab_cache/generations.sqlite     # the default; cache_path=null turns it off

A generation is keyed by the model identity (served name plus checkpoint hash or revision), the exact prompt and
every sampling parameter including the seed; unseeded requests are never cached (they are not reproducible). The
cached value holds the completions and the server's usage, so the ledger charges a cached pool exactly what it cost
when it was generated.

Why SQLite: each batch of inserts is one transaction, so a process killed mid-write leaves the database as it was
before that transaction (no torn entry, no corrupt file); WAL lets readers in other jobs proceed during a write, and
a busy timeout makes concurrent writers from parallel sweep jobs wait instead of failing.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from search.contracts import (Completion, Generation, LabError, Policy, SamplingParams, TokenLogprobs, Usage,
                              per_prompt)

SCHEMA = "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, model_id TEXT, value TEXT NOT NULL)"


def cache_key(model_id: str, prompt: str, params: SamplingParams, logprobs: int | None = None) -> str:
    """sha256 of the model identity, the prompt, every sampling parameter and, only when asked for, the number of top
    logprobs per token (so a request without logprobs keeps the key it always had, and old caches stay readable)."""
    extra = {} if logprobs is None else {"logprobs": int(logprobs)}
    payload = json.dumps({"model": model_id, "prompt": prompt, **asdict(params), **extra}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class GenerationCache:
    """A key-value store of generations on disk; safe across threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise LabError(f"generation cache at {self.path} cannot be opened ({err}): give a writable "
                           f"cache_path=FILE, or cache_path=null to run without a cache") from None
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, Generation]:
        if not keys:
            return {}
        with self._lock:
            rows = self._db.execute(f"SELECT key, value FROM generations WHERE key IN ({','.join('?' * len(keys))})",
                                    list(keys)).fetchall()
        return {key: _decode(value) for key, value in rows}

    def put_many(self, items: dict[str, Generation], model_id: str) -> None:
        """Store all items in one transaction: after a crash either all of them are there or none."""
        if not items:
            return
        rows = [(k, model_id, _encode(g)) for k, g in items.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO generations VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


def _encode(gen: Generation) -> str:
    # a completion without logprobs is stored exactly as before they existed
    comps = [{k: v for k, v in asdict(c).items() if not (k == "logprobs" and v is None)} for c in gen.completions]
    return json.dumps({"completions": comps, "usage": asdict(gen.usage)})


def _completion(c: dict) -> Completion:
    lp = c.pop("logprobs", None)
    logprobs = None if lp is None else TokenLogprobs(tuple(lp["token"]), tuple(tuple(t) for t in lp["top"]))
    return Completion(**c, logprobs=logprobs)


def _decode(value: str) -> Generation:
    data = json.loads(value)
    return Generation(tuple(_completion(c) for c in data["completions"]), Usage(**data["usage"]))


class CachedPolicy:
    """A Policy that answers from the cache and sends only the misses to the wrapped policy, in one batch."""

    def __init__(self, policy: Policy, cache: GenerationCache):
        self.policy, self.cache = policy, cache
        self.model_id, self.n_params = policy.model_id, policy.n_params
        self.logprobs = getattr(policy, "logprobs", None)
        """Top logprobs per token the wrapped policy asks for (None: none); part of the key when set."""
        self.hits = 0
        """Prompts answered from the cache."""
        self.misses = 0
        """Prompts sent to the policy (generation requests)."""
        self.generated_tokens = 0
        """Completion tokens the policy generated for those requests (cache hits generate none)."""
        self._lock = threading.Lock()

    def __getattr__(self, name):
        # server_version, checkpoint_hash, requests_per_replica, ... come from the wrapped policy
        return getattr(self.policy, name)

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        params = per_prompt(params, len(prompts))
        keys = [cache_key(self.model_id, p, q, self.logprobs) if q.seed is not None else None for p, q in zip(prompts, params)]
        found = self.cache.get_many(list({k for k in keys if k is not None}))
        missing = [i for i, k in enumerate(keys) if k not in found]      # unseeded prompts are never cached
        fresh = []
        if missing:
            fresh = self.policy.generate([prompts[i] for i in missing], [params[i] for i in missing])
            new = {keys[i]: g for i, g in zip(missing, fresh) if keys[i] is not None}
            self.cache.put_many(new, self.model_id)
            found.update(new)
        with self._lock:
            self.hits += len(prompts) - len(missing)
            self.misses += len(missing)
            self.generated_tokens += sum(g.usage.completion_tokens for g in fresh)
        by_index = dict(zip(missing, fresh))
        return [by_index[i] if i in by_index else found[k] for i, k in enumerate(keys)]
