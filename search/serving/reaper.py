"""A guard around a server process tree: when the process that started it dies, however it dies, or when the server
itself dies, every process of the tree is killed.

    python -m search.serving.reaper FD -- COMMAND ARGS...      # started by ManagedServer, never by hand

Why: a vLLM API server spawns an engine-core process and workers (about 2 GB here). Killing the lab with SIGKILL
used to leave the server running, and killing the API server left its engine core and workers running under PID 1.
The guard runs ``COMMAND`` as its child in its own process group (the guard leads it) and:

- blocks on the read end ``FD`` of a pipe whose only write end the owner holds: the kernel closes it when the owner
  dies (SIGKILL included), the read returns end-of-file, and the guard kills the group;
- is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so descendants orphaned by the server's death are re-parented
  to it rather than to PID 1, and it kills them too when the server exits;
- on SIGTERM (the owner's orderly stop) it forwards SIGTERM to the group, waits, then SIGKILLs what is left.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
"""prctl option (Linux): orphaned descendants are re-parented to this process instead of init."""
GRACE_S = 10.0
"""Seconds between SIGTERM and SIGKILL when the tree is taken down."""


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(grace_s: float = GRACE_S) -> None:
    """SIGTERM every descendant of this process, wait up to ``grace_s`` for them to go, SIGKILL the rest, reap."""
    me = os.getpid()
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in descendants(me):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while descendants(me) and time.monotonic() < deadline:
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m search.serving.reaper FD -- COMMAND ARGS...", file=sys.stderr)
        return 2
    fd, command = int(argv[0]), argv[2:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass                                  # not Linux: the pipe and the group still cover the common cases
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def owner_gone() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        done.set()

    threading.Thread(target=owner_gone, daemon=True).start()
    while not done.is_set() and child.poll() is None:
        done.wait(0.5)
    code = child.poll()
    kill_tree()
    return code if code is not None else 0


if __name__ == "__main__":
    sys.exit(main())
