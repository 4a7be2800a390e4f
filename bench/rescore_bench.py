"""Benchmark the per-k evaluation of pools (``search.analysis.pool.evaluate_pool``): this tree against an old commit.

    .venv/bin/python bench/rescore_bench.py multirun/noise_flip                 # every job's records under the dir
    .venv/bin/python bench/rescore_bench.py RUN_DIR --old-rev 7e460b4 --jobs 3

Re-evaluates every problem of the given runs (their records.jsonl: answers, grades, verifier scores) with the same
arguments the runner gave (budgets, fp_cost, weighted-vote draws, the per-problem seed), once with the estimators
of ``--old-rev`` (read from git, loaded beside this tree's) and once with this tree's, interleaved problem by problem
so a busy machine slows both alike. Prints the time per job and per rule, old against new, with the ratio, and
checks that both give the same numbers, equal to the ``by_k`` the run recorded. Times are the process's CPU time
(the machine is shared: wall time also counts other people's work), wall time beside them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = {"coverage": "pass_at_k", "argmax": "best_of_k_curve", "majority": "majority_curve",
         "weighted": ("weighted_vote_at_k", "weighted_vote_curve"), "accept": "binary_accept_at_k"}
"""The estimator behind each rule of evaluate_pool (old and new names where the function changed)."""


def load_old(rev: str) -> types.ModuleType:
    """``search.analysis.pool`` as it was at ``rev``, bound to the estimators of that revision."""
    def source(path: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True,
                              text=True).stdout

    est = types.ModuleType("old_estimators")
    exec(compile(source("search/analysis/estimators.py"), f"{rev}:estimators.py", "exec"), est.__dict__)
    pool = types.ModuleType("old_pool")
    pool.__dict__["estimators"] = est
    code = source("search/analysis/pool.py").replace("from search.analysis import estimators\n", "")
    exec(compile(code, f"{rev}:pool.py", "exec"), pool.__dict__)
    return pool


def timed(pool: types.ModuleType, clock: dict) -> None:
    """Wrap the estimators a pool module calls so each rule's CPU time adds up in ``clock``."""
    est = pool.estimators
    for rule, names in RULES.items():
        for name in (names,) if isinstance(names, str) else names:
            fn = getattr(est, name, None)
            if fn is None or getattr(fn, "timed", False):
                continue

            def wrapper(*a, _fn=fn, _rule=rule, **kw):
                t = time.process_time()
                try:
                    return _fn(*a, **kw)
                finally:
                    clock[_rule] = clock.get(_rule, 0.0) + time.process_time() - t
            wrapper.timed = True
            setattr(est, name, wrapper)


def jobs_under(paths: list[Path]) -> list[Path]:
    runs = sorted({p.parent for path in paths for p in ([path / "summary.json"] if (path / "summary.json").exists()
                                                       else path.rglob("summary.json"))})
    return [r for r in runs if (r / "records.jsonl").exists()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="run directories, or sweep directories holding them")
    ap.add_argument("--old-rev", default="7e460b4", help="the commit to compare with (default: before the "
                    "vectorised evaluation)")
    ap.add_argument("--jobs", type=int, default=None, help="evaluate only the first N jobs found")
    args = ap.parse_args(argv)
    from search.analysis import pool as new
    from search.seeding import derive_seed

    old = load_old(args.old_rev)
    runs = jobs_under(args.runs)[:args.jobs]
    if not runs:
        print(f"error: no run with records.jsonl and summary.json under {', '.join(map(str, args.runs))}",
              file=sys.stderr)
        return 2
    clocks = {"old": {}, "new": {}}
    timed(old, clocks["old"])
    timed(new, clocks["new"])
    total = {"old": 0.0, "new": 0.0}
    wall = {"old": 0.0, "new": 0.0}
    problems, same, as_recorded = 0, True, True
    for run in runs:
        cfg = json.loads((run / "summary.json").read_text())["config"]
        for line in (run / "records.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if "by_k" not in rec:
                continue
            p, ks = rec["pool"], rec["by_k"]["k"]
            kw = dict(prompt_tokens=0, completion_tokens=p["completion_tokens"], verifier_tokens=0,
                      policy_params=0, verifier_params=0, fp_cost=cfg["fp_cost"],
                      weighted_draws=cfg["weighted_vote_draws"],
                      seed=derive_seed(cfg["seed"], "weighted", rec["problem_id"]))
            out = {}
            for side, mod in (("old", old), ("new", new)):
                t, w = time.process_time(), time.perf_counter()
                out[side] = mod.evaluate_pool(p["answer"], p["correct"], p["score"], ks, **kw)
                total[side] += time.process_time() - t
                wall[side] += time.perf_counter() - w
            problems += 1
            same &= out["old"] == out["new"]
            as_recorded &= all(out["new"][r] == rec["by_k"][r] for r in (*RULES, "weighted_mc_se", "accept_reward",
                                                                        "abstain", "false_positive"))
    print(f"{len(runs)} jobs, {problems} problems; old = {args.old_rev}, new = this tree")
    print(f"{'per job (CPU s)':<22}{'old':>10}{'new':>10}{'ratio':>8}")
    for rule in RULES:
        o, n = clocks["old"].get(rule, 0.0) / len(runs), clocks["new"].get(rule, 0.0) / len(runs)
        print(f"{rule:<22}{o:>10.4f}{n:>10.4f}{o / max(n, 1e-9):>8.1f}")
    rest = {s: total[s] - sum(clocks[s].values()) for s in total}
    print(f"{'rest of evaluate_pool':<22}{rest['old'] / len(runs):>10.4f}{rest['new'] / len(runs):>10.4f}"
          f"{rest['old'] / max(rest['new'], 1e-9):>8.1f}")
    print(f"{'evaluate_pool':<22}{total['old'] / len(runs):>10.4f}{total['new'] / len(runs):>10.4f}"
          f"{total['old'] / max(total['new'], 1e-9):>8.1f}")
    print(f"{'  (wall s)':<22}{wall['old'] / len(runs):>10.4f}{wall['new'] / len(runs):>10.4f}"
          f"{wall['old'] / max(wall['new'], 1e-9):>8.1f}")
    print(f"numbers: old and new {'identical' if same else 'DIFFERENT'}; new "
          f"{'equal to' if as_recorded else 'DIFFERENT from'} the records' by_k")
    return 0 if same and as_recorded else 1


if __name__ == "__main__":
    sys.exit(main())
