"""Derived seeds: one base seed per run, one stable seed per (purpose, problem), identical on every machine."""
from __future__ import annotations

import hashlib


def derive_seed(base: int, *parts: object) -> int:
    """A 31-bit seed from a base seed and any labels (problem id, step, ...); Python's hash() is salted per
    process, so a digest is used instead."""
    digest = hashlib.sha256("\x1f".join(map(str, (base, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
