"""No process left behind: every vLLM server the lab starts, with its engine core and workers, ends when the process
that owns it dies, however it dies, and when the API server itself is killed. Real servers on the shipped policy.

Each test records the process tree it starts (pid and start time, from /proc) before the kill and checks that none
of those processes is alive after it, so servers of other tests in the session do not count.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parents[1]


def tree(root: int) -> dict[tuple[int, int], str]:
    """(pid, start time) -> command line of ``root`` and every live descendant, read from /proc. (The environment
    cannot mark them: vLLM's processes overwrite theirs when they set their title, e.g. VLLM::EngineCore.)"""
    parent, info = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[0] != "Z":
            parent[int(entry)] = int(stat[1])
            info[int(entry)] = (int(stat[19]), cmd)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            out[(pid, info[pid][0])] = info[pid][1]
        todo += [p for p, pp in parent.items() if pp == pid]
    return out


def alive(procs: dict[tuple[int, int], str]) -> list[str]:
    """The command lines of the processes (pid and start time, so a reused pid does not count) still running."""
    left = []
    for (pid, started), cmd in procs.items():
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[19]) == started and stat[0] != "Z":
            left.append(cmd)
    return left


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


def engine_up(root: int) -> dict:
    procs = tree(root)
    return procs if any("EngineCore" in cmd for cmd in procs.values()) else {}


def test_killing_the_lab_with_sigkill_leaves_no_vllm_process(tmp_path):
    lab = subprocess.Popen([sys.executable, "-m", "search.run", "cache_path=null", "n_problems=200",
                            f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        # killed while generating (a kill during vLLM's compile can leave a truncated compile-cache artifact,
        # which the next start repairs: tests/test_serving_fast.py)
        wait_for(lambda: (tmp_path / "run" / "records.jsonl").exists(), 400, "the lab's first record")
        procs = tree(lab.pid)          # the lab, the guard, the API server, the engine core, its worker
        assert sum("vllm" in cmd.lower() for cmd in procs.values()) >= 3, procs
    finally:
        lab.send_signal(signal.SIGKILL)
        lab.wait()
    wait_for(lambda: not alive(procs), 60, "every vLLM process of the killed lab to end")


def test_killing_the_api_server_takes_its_engine_core_with_it(tmp_path):
    script = ("import time\nfrom search.serving.checkpoint import SHIPPED\n"
              "from search.serving.vllm_server import ManagedServer\n"
              # vLLM's own three-process layout; eager, since compiling is not what this checks
              f"s = ManagedServer(str(SHIPPED['tiny-policy']), extra_args=('--enforce-eager',), "
              f"log_path={str(tmp_path)!r}).start()\n"
              "print('up', flush=True)\ntime.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "up"
        procs = engine_up(owner.pid)
        api = [pid for (pid, _), cmd in procs.items() if "-m vllm.entrypoints.openai.api_server" in cmd
               and "search.serving.reaper" not in cmd]
        assert len(api) == 1 and procs
        os.kill(api[0], signal.SIGKILL)
        server = {key: cmd for key, cmd in procs.items() if key[0] != owner.pid}
        wait_for(lambda: not alive(server), 60, "the engine core and worker to end with their API server")
    finally:
        owner.kill()
        owner.wait()
