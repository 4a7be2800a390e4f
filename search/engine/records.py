"""A run directory's files: the config that made it, the record file a run appends to, and JSON written atomically.

``records.jsonl`` holds one line per finished problem, appended one complete line at a time (flushed and fsynced),
so a killed run loses at most the line being written; on open, a torn last line is cut off and the finished problem
ids are read back, which is how a rerun resumes. ``run_config.json`` is the config that made the records: a rerun
with another config is refused (``check_run_dir``), so a directory never mixes the results of two configs.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from search.build import identity
from search.contracts import LabError

CONFIG_FILE = "run_config.json"
"""The config that made a run directory's records, as plain fields."""


def check_run_dir(out_dir: Path, config: dict) -> None:
    """Refuse to add records made by ``config`` to a directory whose records another config made; record the
    config when the directory is new. A directory from before ``run_config.json`` existed is checked against its
    summary's config."""
    path, records = out_dir / CONFIG_FILE, out_dir / "records.jsonl"
    before = None
    if path.exists():
        before = json.loads(path.read_text())
    elif (out_dir / "summary.json").exists():
        before = json.loads((out_dir / "summary.json").read_text()).get("config")
    has_records = records.exists() and records.stat().st_size > 0
    if before is not None and has_records:
        old, new = identity(before), identity(config)
        diff = sorted(k for k in old.keys() | new.keys() if old.get(k, "(unset)") != new.get(k, "(unset)"))
        if diff:
            shown = "; ".join(f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in diff[:4])
            more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
            raise LabError(f"{out_dir} holds records of another config ({shown}{more}): run into a new directory "
                           f"(hydra.run.dir=... or hydra.sweep.dir=...), or delete {out_dir} to start it afresh")
    if before is None or not has_records:
        write_json_atomic(path, config)


class RecordFile:
    """records.jsonl, appended one complete line at a time and flushed, so a killed run loses at most the line being
    written; on open, a torn last line is cut off (a whole record that lost only its newline keeps it, and gets its
    newline back) and the finished problem ids are read back.

    A flushed line is in the operating system's hands, so it survives the process being killed (SIGKILL
    included). fsync, which also protects against the machine itself going down, costs about 17 ms here and was
    half of a re-scoring job's time when it ran after every line; it runs at most every ``SYNC_EVERY_S`` seconds
    and on ``sync()`` and ``close()`` (the runner closes the file when the problems are done). The file stays open
    between appends: opening it for every line cost about 1.5 ms a line here."""

    SYNC_EVERY_S = 2.0
    """Longest time between two fsyncs while records are appended."""

    def __init__(self, path: Path):
        self.path, self._lock = path, threading.Lock()
        self._synced = time.monotonic()
        self._fh = None                     # opened on the first append and kept: opening per line cost 1.5 ms here
        self.records: list[dict] = []
        """Every complete record in the file, in the order written."""
        if path.exists():
            good, unterminated = 0, False
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        self.records.append(json.loads(line))
                    except json.JSONDecodeError:
                        break
                    good += len(line)
                    unterminated = not line.endswith(b"\n")
            with open(path, "r+b") as fh:
                fh.truncate(good)
                if unterminated:            # killed between a whole record and its newline: keep it, end its line
                    fh.seek(good)
                    fh.write(b"\n")

    @property
    def done(self) -> set[str]:
        """The ids of the problems that have a record."""
        return {r["problem_id"] for r in self.records}

    def append(self, record: dict) -> None:
        """Write one record as one line, durably, before it counts as done."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._fh is None:
                self._fh = open(self.path, "a")
            self._fh.write(line)
            self._fh.flush()
            if time.monotonic() - self._synced >= self.SYNC_EVERY_S:
                os.fsync(self._fh.fileno())
                self._synced = time.monotonic()
            self.records.append(record)

    def sync(self) -> None:
        """fsync the file: every appended record is on disk when this returns."""
        with self._lock:
            if self._fh is not None:
                os.fsync(self._fh.fileno())
            elif self.path.exists():
                with open(self.path, "rb+") as fh:
                    os.fsync(fh.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        """``sync`` and close the file; a later append opens it again."""
        self.sync()
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
