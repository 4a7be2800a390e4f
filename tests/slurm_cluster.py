"""A real single-node SLURM cluster on loopback for the tests: Debian's slurm-wlm and munge, run as root in a
temporary directory, torn down with every process it started.

    with SlurmCluster(tmp_dir) as cluster:      # munged, slurmctld, slurmd; returns once sinfo shows the node idle
        subprocess.run(["sbatch", ...], env=cluster.env)   # SLURM_CONF and PATH point at this cluster

Nothing outside the directory is touched: munged listens on its own socket with its own key (named in slurm.conf's
``AuthInfo=socket=...``), the daemons read the slurm.conf written there (``-f`` and ``SLURM_CONF``) on free ports,
and state, spool, pid and log files live there. ``proctrack/linuxproc`` and ``task/none`` keep cgroups out of it, so
it runs in a container. What slurm-wlm 22.05 needs that this machine's cluster lacks: accounting (slurmdbd and a
database), which ``sacct`` reads. submitit asks ``sacct`` for the state of a job that ended without a result (a
cancelled job), so ``bin/sacct`` here answers the same query from ``scontrol show job``, which keeps a finished job
for ``MinJobAge`` seconds. ``KillWait=0``: scancel's SIGTERM is followed at once by SIGKILL (a submitit job
ignores SIGTERM, and with a real cluster's 30 s a small test job would finish its work before it died).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel", "scontrol", "srun")

SACCT = '''#!{python}
"""sacct for a cluster without accounting storage: JobID|State|NodeList of the jobs given by -j, from scontrol (the
only query submitit makes: sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...])."""
import subprocess, sys

args, ids = sys.argv[1:], []
for i, a in enumerate(args):
    if a == "-j" or a == "--jobs":
        ids += args[i + 1].split(",")
print("JobID|State|NodeList")
for job in ids:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        task = f.get("ArrayTaskId")
        if task and f.get("ArrayJobId"):       # pending tasks of an array are one line, as sacct shows them
            jid = f"{{f['ArrayJobId']}}_{{task}}" if task.isdigit() else f"{{f['ArrayJobId']}}_[{{task}}]"
        else:
            jid = f.get("JobId", "")
        print(f"{{jid}}|{{f.get('JobState', 'UNKNOWN')}}|{{f.get('NodeList', '')}}")
'''


def missing() -> str | None:
    """Why the cluster cannot run here (a reason for pytest.skip), or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return (f"slurm-wlm/munge not installed ({', '.join(absent)} missing): "
                f"apt-get install -y slurm-wlm munge (.ci/run does this as root)")
    if os.geteuid() != 0:
        return "the single-node SLURM cluster runs its daemons as root (SlurmUser=root); not root here"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This machine as slurmd sees it (CPUs, sockets, cores, threads, RealMemory): a node configured with more than
    it has is drained, so the config takes slurmd's own figures."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("NodeName="))


def stepd_zombies() -> list[int]:
    """slurmstepd processes that have exited and wait for init to reap them."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            comm, rest = open(f"/proc/{entry}/stat").read().rsplit(")", 1)
            if entry.isdigit() and comm.endswith("(slurmstepd") and rest.split()[0] == "Z":
                found.append(int(entry))
        except OSError:
            continue
    return found


class SlurmCluster:
    """munged + slurmctld + slurmd for one node (this machine, as ``localhost``) and one partition, in ``root``."""

    def __init__(self, root: Path, partition: str = "lab", start_timeout_s: float = 90.0):
        self.root = Path(root)
        self.partition = partition
        self.start_timeout_s = start_timeout_s
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self.startup_s: float | None = None
        self.env = dict(os.environ, SLURM_CONF=str(self.conf),
                        PATH=f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")

    # -- setup ---------------------------------------------------------------------------------------------------
    def write_config(self) -> None:
        r = self.root
        for d in ("munge", "state", "spool", "log", "bin"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400), "wb") as f:
            f.write(os.urandom(1024))
        sacct = r / "bin" / "sacct"
        sacct.write_text(SACCT.format(python=sys.executable))
        sacct.chmod(0o755)
        # slurmd -C names the node by this machine's hostname; the node is addressed on loopback as localhost
        node = node_line().split(None, 1)[1]
        self.conf.write_text(f"""\
# single-node test cluster (tests/slurm_cluster.py)
ClusterName=lab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r / 'munge' / 'munge.socket'}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=0
InactiveLimit=0
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")

    def spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start(self) -> "SlurmCluster":
        t0 = time.monotonic()
        self.write_config()
        m = self.root / "munge"
        # -f: munged refuses a socket directory under a world-writable /tmp without it
        self.spawn("munged", ["munged", "-F", "-f", f"--socket={m / 'munge.socket'}", f"--key-file={m / 'munge.key'}",
                              f"--pid-file={m / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                              f"--seed-file={m / 'munged.seed'}"])
        self.wait(lambda: (m / "munge.socket").exists(), 20, "munged's socket")
        self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self.spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
        self.wait(lambda: self.node_state() == "idle", self.start_timeout_s, "the node to be idle in sinfo")
        self.startup_s = time.monotonic() - t0
        return self

    def wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}:\n{self.logs()}")

    def logs(self, tail: int = 15) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # -- queries -------------------------------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True) -> str:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=30).stdout

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%t", check=False).strip()

    def jobs(self) -> list[dict[str, str]]:
        """The queue: one dict per job or array task (id like 12_3, state, name)."""
        out = self.run("squeue", "-h", "-r", "-o", "%i|%T|%j")
        return [dict(zip(("id", "state", "name"), line.split("|"))) for line in out.splitlines() if line]

    # -- teardown ------------------------------------------------------------------------------------------------
    def ours(self) -> list[int]:
        """Every live process started by this cluster: the daemons, slurmstepd and the jobs (each carries this
        cluster's SLURM_CONF in its environment), except this process and its ancestors."""
        mine, pid = set(), os.getpid()
        while pid > 1:
            mine.add(pid)
            try:
                pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                break
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in mine:
                continue
            try:
                if marker in open(f"/proc/{entry}/environ", "rb").read().split(b"\0"):
                    state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def stop(self) -> list[str]:
        """Cancel every job, stop the daemons, kill anything of ours still alive; returns the command lines of the
        processes that had to be killed after the daemons stopped (empty when teardown was clean)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                ids = [j["id"] for j in self.jobs()]
                if ids:
                    self.run("scancel", *ids, check=False)
                    deadline = time.monotonic() + 30
                    while self.jobs() and time.monotonic() < deadline:
                        time.sleep(0.5)
            except (subprocess.SubprocessError, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        leftovers = []
        for pid in self.ours():
            try:
                leftovers.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # slurmd hands each slurmstepd to init: give init a moment to reap them, so ps shows nothing afterwards
        deadline = time.monotonic() + 5
        while stepd_zombies() and time.monotonic() < deadline:
            time.sleep(0.2)
        return leftovers

    def __enter__(self) -> "SlurmCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
