"""Serving logic that needs no server: the guard that takes a process tree down when its owner dies, and the
repair of a corrupt vLLM compile-cache entry."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from search.serving.vllm_server import corrupt_compile_cache

ROOT = Path(__file__).resolve().parents[1]


def test_a_corrupt_compile_cache_entry_is_found_in_the_log(tmp_path):
    entry = tmp_path / "torch_compile_cache" / "torch_aot_compile" / ("ab12" * 16)
    (entry / "inductor_cache" / "lu").mkdir(parents=True)
    log = tmp_path / "vllm.log"
    log.write_text(f"(EngineCore pid=1) ERROR RuntimeError: Worker failed with error 'ImportError: {entry}/inductor_cache"
                   f"/lu/cluj.main.so: file too short', please check the stack trace above\n")
    assert corrupt_compile_cache(log) == entry
    log.write_text("(EngineCore pid=1) ERROR something else\n")
    assert corrupt_compile_cache(log) is None
    assert corrupt_compile_cache(tmp_path / "missing.log") is None


def alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_guard_kills_the_tree_when_its_owner_dies(tmp_path):
    """An owner starts the guard around a process that forks a grandchild in a new session (as vLLM's engine core
    is its own process); the owner is SIGKILLed; the guard takes both down."""
    pids = tmp_path / "pids"
    tree = ("import os, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}')\n"
            "time.sleep(120)\n")
    owner_code = ("import os, subprocess, sys, time\n"
                  "r, w = os.pipe()\n"
                  "subprocess.Popen([sys.executable, '-m', 'search.serving.reaper', str(r), '--', sys.executable, '-c',"
                  f" {tree!r}], pass_fds=(r,), start_new_session=True)\n"
                  "os.close(r)\nprint('started', flush=True)\ntime.sleep(120)\n")
    owner = subprocess.Popen([sys.executable, "-c", owner_code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child, grandchild = map(int, pids.read_text().split())
    assert alive(child) and alive(grandchild)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 30
    while (alive(child) or alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(child) and not alive(grandchild)


def test_the_guard_kills_the_rest_when_the_server_dies(tmp_path):
    """The server (the guard's child) dies; its grandchild, re-parented to the guard, is killed too."""
    pids = tmp_path / "pids"
    tree = ("import os, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}')\n"
            "time.sleep(120)\n")
    r, w = os.pipe()
    guard = subprocess.Popen([sys.executable, "-m", "search.serving.reaper", str(r), "--", sys.executable, "-c", tree],
                             cwd=ROOT, pass_fds=(r,))
    os.close(r)
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child, grandchild = map(int, pids.read_text().split())
        os.kill(child, signal.SIGKILL)
        guard.wait(timeout=30)
        assert not alive(grandchild)
    finally:
        os.close(w)


def test_requests_go_to_the_replica_with_fewest_in_flight_and_ties_take_turns():
    """Two scripted replicas: while b holds a request, every new one goes to a; when both are idle they alternate.
    This is the dispatch rule the real two-server test cannot pin down (its timing depends on the machine)."""
    import threading

    import httpx

    from search.serving.http import Replicas

    entered, release = threading.Event(), threading.Event()

    def answer(name):
        def handler(request):
            if name == "b" and not release.is_set():
                entered.set()
                release.wait(10)
            return httpx.Response(200, json={"from": name})
        return handler

    http = Replicas(["http://a.test", "http://b.test"], "policy", "m", "policy", max_retries=0)
    http.clients = [httpx.Client(base_url=f"http://{n}.test", transport=httpx.MockTransport(answer(n))) for n in "ab"]
    assert http.post("/x", {})["from"] == "a"                              # both idle: a first
    held = threading.Thread(target=http.post, args=("/x", {}))              # then b (its turn), which holds it
    held.start()
    assert entered.wait(10)
    assert [http.post("/x", {})["from"] for _ in range(5)] == ["a"] * 5   # b has one in flight: all go to a
    release.set()
    held.join(10)
    assert http.sent == (6, 1)
    assert [http.post("/x", {})["from"] for _ in range(4)] == ["b", "a", "b", "a"]   # both idle again: they alternate
    assert http.sent == (8, 3)
