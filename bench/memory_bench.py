"""Peak memory of a large pool run: 500 problems x 256 samples of best-of-k, against a small run, side by side.

    .venv/bin/python bench/memory_bench.py                        # starts a managed server on the tiny policy
    .venv/bin/python bench/memory_bench.py --runs 500x16,500x256 --base-url http://127.0.0.1:8000

Each run is the lab's own best-of-k run (``search.engine.runner.run``: metered policy, the exact oracle, the per-k
evaluation of every pool, records, the summary) in a fresh child process against one vLLM server, the generation
cache off so every sample is really generated, on the task's evaluation stream grown to the run's problem count.
For each run it prints the child's peak resident memory (``ru_maxrss``), the size of its records file, the server's
peak resident memory while the run lasted (its whole process tree, sampled every 0.2 s), and the solve time; then
the lab's extra memory per extra sample between the first and the last run. The first run is the baseline the
others are read against, so the machine's noise is shared.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(args: argparse.Namespace) -> int:
    """One run in this process; prints one JSON line: peak RSS, records size, time, samples."""
    from search.build import compose
    from search.engine.runner import run
    from search.serving.checkpoint import count_params, resolve

    overrides = ["strategy=best_of_k", "verifier=outcome_oracle", f"strategy.budget={args.budget}",
                 f"task.eval_size={args.n_problems}", f"n_problems={args.n_problems}", "cache_path=null",
                 "policy=remote", f"policy.base_urls=[{args.base_url}]", "policy.model=tiny-policy",
                 f"policy.n_params={count_params(resolve('tiny-policy'))}", "concurrency=64", "seed=1"]
    summary = run(compose(overrides), args.out)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "records_mb": (args.out / "records.jsonl").stat().st_size / 2**20,
                      "solve_s": summary["phases_s"]["solve"],
                      "samples": summary["ledger_totals"]["policy_samples"],
                      "tokens": summary["ledger_totals"]["completion_tokens"]}))
    return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


class PeakSampler:
    """The largest value of ``probe()`` seen while the block runs, sampled every ``every_s`` seconds."""

    def __init__(self, probe, every_s: float = 0.2):
        self.probe, self.every_s, self.peak = probe, every_s, 0.0
        self._stop = threading.Event()

    def __enter__(self):
        def loop():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.probe())
                self._stop.wait(self.every_s)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.probe())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="500x16,500x256", help="problems x samples of each run, the first the baseline")
    ap.add_argument("--base-url", default=None, help="a running server (default: start a managed one)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n-problems", type=int, default=500, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    try:
        runs = [tuple(int(x) for x in r.split("x")) for r in args.runs.split(",")]
        if not runs or any(len(r) != 2 or min(r) < 1 for r in runs):
            raise ValueError
    except ValueError:
        print(f"error: --runs {args.runs}: give problems x samples pairs, e.g. --runs 500x16,500x256",
              file=sys.stderr)
        return 2
    from search.serving.checkpoint import resolve
    from search.serving.vllm_server import served

    with served(args.base_url, resolve("tiny-policy"), "tiny-policy") as (base_url, server):
        server_pid = server.pid if server is not None else None
        print(f"server {base_url}; each run a fresh child process, generation cache off")
        print(f"{'run':<10}{'samples':>9}{'tokens':>10}{'solve s':>9}{'lab peak MiB':>14}{'records MiB':>13}"
              f"{'server peak MiB':>17}")
        results = []
        for problems, samples in runs:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--child", "--base-url", base_url, "--n-problems", str(problems),
                       "--budget", str(samples), "--out", str(Path(tmp) / "run")]
                probe = (lambda: tree_rss_mb(server_pid)) if server_pid else (lambda: 0.0)
                with PeakSampler(probe) as sampler:
                    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                r = json.loads(done.stdout.strip().splitlines()[-1])
            r.update(run=f"{problems}x{samples}", server_peak_mb=sampler.peak)
            results.append(r)
            print(f"{r['run']:<10}{r['samples']:>9}{r['tokens']:>10}{r['solve_s']:>9.1f}{r['peak_rss_mb']:>14.0f}"
                  f"{r['records_mb']:>13.1f}{r['server_peak_mb']:>17.0f}", flush=True)
        base, last = results[0], results[-1]
        if last["samples"] != base["samples"]:
            per = (last["peak_rss_mb"] - base["peak_rss_mb"]) * 2**20 / (last["samples"] - base["samples"])
            print(f"lab peak {last['run']} / {base['run']}: {last['peak_rss_mb'] / base['peak_rss_mb']:.2f}x for "
                  f"{last['samples'] / base['samples']:.0f}x the samples; {per:.0f} bytes of peak memory per extra "
                  f"sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
