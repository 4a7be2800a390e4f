"""Facts about a Hugging Face checkpoint directory, read without loading torch: where the shipped one is, its
content hash (the model identity in records and cache keys) and its parameter count (for the FLOPs formula)."""
from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from pathlib import Path

from search.contracts import LabError

SHIPPED = {"tiny-policy": Path(__file__).resolve().parents[1] / "tiny" / "policy",
           "tiny-prm": Path(__file__).resolve().parents[1] / "tiny" / "prm",
           "tiny-prm-exact": Path(__file__).resolve().parents[1] / "tiny" / "prm_exact",
           "tiny-judge": Path(__file__).resolve().parents[1] / "tiny" / "judge"}
"""Checkpoints that ship inside the package, by name."""
HASHED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
"""Files that, with every *.safetensors file, define a checkpoint's identity."""


def resolve(path_or_name: str | Path) -> Path:
    """A shipped checkpoint's name, or a directory; LabError when it is not a checkpoint."""
    path = SHIPPED.get(str(path_or_name), Path(path_or_name)).expanduser()
    if not (path / "config.json").is_file():
        raise LabError(f"checkpoint not found at {path}: give a directory with config.json and *.safetensors "
                       f"(policy.checkpoint=PATH or verifier.checkpoint=PATH) or one of the shipped names "
                       f"{sorted(SHIPPED)}")
    return path.resolve()


@lru_cache(maxsize=32)
def checkpoint_hash(path: Path) -> str:
    """sha256 over the weights, config and tokenizer files, first 16 hex digits."""
    h = hashlib.sha256()
    files = sorted(path.glob("*.safetensors")) + [path / f for f in HASHED_FILES if (path / f).is_file()]
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


@lru_cache(maxsize=32)
def count_params(path: Path) -> int:
    """Parameters stored in the checkpoint's safetensors files (read from their JSON headers only)."""
    total = 0
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, meta in header.items():
            if name != "__metadata__":
                n = 1
                for dim in meta["shape"]:
                    n *= dim
                total += n
    if total == 0:
        raise LabError(f"no *.safetensors weights in {path}: save the model with safe_serialization=True")
    return total
