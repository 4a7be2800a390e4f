"""A run directory's files: the record file a run appends to, and JSON written atomically.

``records.jsonl`` holds one line per finished problem, appended one complete line at a time (flushed and fsynced),
so a killed run loses at most the line being written; on open, a torn last line is cut off and the finished problem
ids are read back, which is how a rerun resumes.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class RecordFile:
    """records.jsonl, appended one complete line at a time (flushed and fsynced), so a killed run loses at most
    the line being written; on open, a torn last line is cut off and the finished problem ids are read back."""

    def __init__(self, path: Path):
        self.path, self._lock = path, threading.Lock()
        self.records: list[dict] = []
        """Every complete record in the file, in the order written."""
        if path.exists():
            good = 0
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        self.records.append(json.loads(line))
                    except json.JSONDecodeError:
                        break
                    good += len(line)
            with open(path, "r+b") as fh:
                fh.truncate(good)

    @property
    def done(self) -> set[str]:
        """The ids of the problems that have a record."""
        return {r["problem_id"] for r in self.records}

    def append(self, record: dict) -> None:
        """Write one record as one line, durably, before it counts as done."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            with open(self.path, "a") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.records.append(record)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
