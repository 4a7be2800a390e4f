"""The cluster path, run for real: a single-node SLURM cluster (Debian's slurm-wlm and munge, tests/slurm_cluster.py)
on loopback runs the scale-out test's 8-job sweep through ``hydra/launcher=slurm`` (submitit, real sbatch and srun)
against the session's shared vLLM server, and the table is frame-equal to the basic launcher's; a job cancelled with
scancel mid-sweep, then the same command again, ends in the same table without redoing finished jobs
(docs/scale-out.md, step 4). Skipped where slurm-wlm/munge are not installed or the tests do not run as root."""
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pandas as pd
import pytest

from search.analysis.tables import collect
from tests.slurm_cluster import SlurmCluster, missing
from tests.test_scale import MACHINE_COLUMNS, SWEEP, basic, remote, shared_url, sweep  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=lab", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
"""The shipped slurm launcher config with this cluster's partition and a job's size here: one core (two jobs run at
once on two cores), 1 GB, no GPUs (the policy is on the shared server)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        print(f"\nsingle-node cluster idle {c.startup_s:.1f} s after start ({c.root})")
        yield c
        left = c.stop()
        assert not left, f"processes of the cluster still running after the daemons stopped: {left}"
        assert not c.ours(), "a process of the cluster survived teardown"


@pytest.fixture
def on_cluster(cluster, monkeypatch):
    """This process's sbatch/srun/squeue/sacct calls (submitit's) go to the test cluster."""
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    monkeypatch.setenv("PATH", cluster.env["PATH"])
    return cluster


def test_the_cluster_runs_a_batch_job_with_a_step(cluster, tmp_path):
    t0 = time.monotonic()
    job = cluster.run("sbatch", "--parsable", "-o", str(tmp_path / "out"), "--wrap", "srun echo step-ran").strip()
    while cluster.jobs():
        assert time.monotonic() - t0 < 60, cluster.logs()
        time.sleep(0.2)
    assert (tmp_path / "out").read_text().strip() == "step-ran"
    assert "COMPLETED" in cluster.run("sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job)


def settled_state(cluster: SlurmCluster, job: str, timeout_s: float = 30) -> str:
    """The job's state once it has left RUNNING and COMPLETING (a cancelled job passes through COMPLETING)."""
    deadline = time.monotonic() + timeout_s
    while True:
        line = cluster.run("scontrol", "show", "job", "-o", job)
        state = next(f.split("=", 1)[1] for f in line.split() if f.startswith("JobState="))
        if state not in ("RUNNING", "COMPLETING", "PENDING") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


class GatedProxy:
    """The shared server behind a gate: the first ``allow`` generation requests (POSTs) pass, the rest wait until
    ``release()``. With one task of the array at a time, the first task is then certainly running and part-way through
    its job when scancel reaches it, however fast the machine (timing it with polls failed in CI, 2026-11-28)."""

    def __init__(self, upstream: str, allow: int):
        self.upstream, self.allow, self.seen = upstream, allow, 0
        self.lock, self.opened, self.holding = threading.Lock(), threading.Event(), threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.command == "POST":
                    with proxy.lock:
                        proxy.seen += 1
                        held = proxy.seen > proxy.allow
                    if held:
                        proxy.holding.set()
                        proxy.opened.wait()
                resp = httpx.request(self.command, proxy.upstream + self.path, content=body, timeout=300,
                                     headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = forward

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass                    # the cancelled task's connection, dropped mid-request

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def record_file(job_dir: Path) -> bytes:
    """A job's records as written (a redone problem would append a record, and each carries its own wall time)."""
    return (job_dir / "records.jsonl").read_bytes()


def table_of(sweep_dir: Path) -> pd.DataFrame:
    table = collect(sweep_dir)
    return table.sort_values(["overrides", "selection", "k"]).reset_index(drop=True)


@pytest.mark.server
def test_a_slurm_sweep_gives_the_basic_launchers_table(on_cluster, basic, shared_url, tmp_path, monkeypatch):
    t0 = time.monotonic()
    table = sweep(tmp_path, monkeypatch, shared_url, *LAUNCHER)
    print(f"\n8-job sweep through sbatch: {time.monotonic() - t0:.1f} s")
    assert table["overrides"].nunique() == 8 and len(table) == len(basic)
    pd.testing.assert_frame_equal(table, basic)
    assert len(list(tmp_path.rglob("summary.json"))) == 8
    tasks = [p.name for p in (tmp_path / ".submitit").iterdir() if p.is_dir() and "_" in p.name]
    assert len(tasks) == 8 and len({t.split("_")[0] for t in tasks}) == 1, tasks   # one array, a task per job


@pytest.mark.server
def test_a_job_cancelled_mid_sweep_resumes_into_the_same_table(on_cluster, basic, shared_url, tmp_path):
    cluster = on_cluster
    # one task of the array at a time, its generation requests through a gate that holds all but the first two: the
    # first task is running, with some problems done, until it is cancelled; then the gate opens for the rest
    proxy = GatedProxy(shared_url, allow=2)
    command = [sys.executable, "-m", "search.run", "-m", *SWEEP, *remote(proxy.url), *LAUNCHER,
               "hydra.launcher.array_parallelism=1", f"hydra.sweep.dir={tmp_path}"]
    t0 = time.monotonic()
    while cluster.jobs():               # the previous test's last tasks may still be ending
        assert time.monotonic() - t0 < 60, cluster.jobs()
        time.sleep(0.5)
    first = subprocess.Popen(command, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        assert proxy.holding.wait(300), "no task of the sweep sent a third generation request in 300 s"
        running = [j["id"] for j in cluster.jobs() if j["state"] == "RUNNING"]
        assert len(running) == 1 and (tmp_path / ".submitit" / running[0]).is_dir(), running
        cancelled = running[0]
        cluster.run("scancel", cancelled)
        assert settled_state(cluster, cancelled) == "CANCELLED"
        assert not list((tmp_path / ".submitit" / cancelled).glob("*_result.pkl"))
        proxy.release()
        out, _ = first.communicate(timeout=300)
    finally:
        proxy.release()
        if first.poll() is None:
            first.kill()
            first.wait()
    t_first = time.monotonic() - t0
    assert first.returncode != 0 and f"Job {cancelled}" in out and "CANCELLED" in out, out[-3000:]
    task = int(cancelled.split("_")[1])
    cancelled_dir = tmp_path / str(task)
    assert not (cancelled_dir / "summary.json").exists()
    records = cancelled_dir / "records.jsonl"
    n_partial = len(records.read_text().splitlines()) if records.exists() else 0
    assert 0 < n_partial < 4, n_partial         # the problems answered before the gate closed
    partial = records.read_bytes()
    while cluster.jobs():               # the other tasks of the array run on after the driver stopped
        assert time.monotonic() - t0 < 900, cluster.jobs()
        time.sleep(0.5)
    finished = {p.parent.name for p in tmp_path.rglob("summary.json")}
    assert len(finished) == 7
    before = {job: record_file(tmp_path / job) for job in finished}

    t1 = time.monotonic()
    again = subprocess.run(command, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=600)
    t_again = time.monotonic() - t1
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    print(f"\ncancelled task {task} (records written before scancel: {n_partial}); first launch {t_first:.1f} s, "
          f"relaunch {t_again:.1f} s")
    assert {job: record_file(tmp_path / job) for job in finished} == before     # finished jobs were not redone
    assert len((cancelled_dir / "records.jsonl").read_text().splitlines()) == 4
    assert record_file(cancelled_dir).startswith(partial)                     # ... were kept, not redone
    proxy.close()
    table = table_of(tmp_path).drop(columns=MACHINE_COLUMNS + ["job"])
    escaped = [url.replace(":", "\\:") for url in (proxy.url, shared_url)]      # as Hydra writes it in overrides
    table["overrides"] = table["overrides"].str.replace(*escaped, regex=False)    # the jobs' URL was the gate's
    pd.testing.assert_frame_equal(table, basic)
