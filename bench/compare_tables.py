"""Are two work directories' tables the same? For a change that must not move a number (a refactor).

    .venv/bin/python bench/sweep_bench.py --workdir /tmp/before          # on the old commit
    .venv/bin/python bench/sweep_bench.py --workdir /tmp/after           # on the new one (copy the cache over
    .venv/bin/python bench/compare_tables.py /tmp/before /tmp/after      #  to skip generation)

Compares every standard sweep's results.parquet and results_by_difficulty.parquet exactly (pandas frame-equal),
leaving out the columns that record a job's own history rather than its result (wall time, and what the generation
cache answered), the main job's per-budget table and policy profile when both directories have ``main_job/``, and
every job both have under ``multirun/``: its summary's per-budget table and each record's per-k values, exactly.
Exit code 0 when everything is equal, 1 otherwise, 2 when there was nothing to compare.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HISTORY = ("job_wall_s", "generation_requests", "generated_tokens", "cache_hits")
"""Columns that depend on how a job ran (a warm cache, a busy machine), not on what it measured."""
SWEEPS = ("compute", "noise_flip", "noise_contamination", "noise_gaussian", "noise_spread", "fp_cost", "strategies")


def main(argv=None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    same, compared = True, 0
    for name in SWEEPS:
        for table in ("results.parquet", "results_by_difficulty.parquet"):
            a, b = args.before / "multirun" / name / table, args.after / "multirun" / name / table
            if not a.exists() and not b.exists():
                continue
            if not (a.exists() and b.exists()):
                print(f"{name}/{table}: only in {'the first' if a.exists() else 'the second'} directory")
                same = False
                continue
            x, y = (pd.read_parquet(p).drop(columns=list(HISTORY), errors="ignore") for p in (a, b))
            try:
                pd.testing.assert_frame_equal(x, y, check_exact=True)
                compared += 1
                print(f"{name}/{table}: {x.shape[0]} rows x {x.shape[1]} columns, frame-equal")
            except AssertionError as err:
                same = False
                print(f"{name}/{table}: DIFFERENT: {' '.join(str(err).split())[:300]}")
    a, b = args.before / "main_job" / "summary.json", args.after / "main_job" / "summary.json"
    if a.exists() and b.exists():
        sa, sb = json.loads(a.read_text()), json.loads(b.read_text())
        equal = sa["budgets"] == sb["budgets"] and sa.get("policy_profile") == sb.get("policy_profile")
        print(f"main_job: per-budget table and policy profile {'identical' if equal else 'DIFFERENT'}")
        same &= equal
        compared += 1
    jobs, differ = job_records(args.before, args.after)
    if jobs:
        compared += 1
        same &= not differ
        print(f"jobs: {jobs} in both directories, every summary's per-budget table and every record's per-k values "
              + ("identical" if not differ else f"DIFFERENT in {len(differ)}: {', '.join(differ[:3])}"))
    if not compared:
        print(f"error: nothing to compare: neither {args.before} nor {args.after} holds a sweep's results.parquet, "
              f"main_job/summary.json or a job both have: give two work directories of bench/sweep_bench.py")
        return 2
    return 0 if same else 1


def job_records(before: Path, after: Path) -> tuple[int, list[str]]:
    """Jobs (directories with summary.json under multirun/) in both trees: how many, and those whose per-budget
    table or per-problem ``by_k`` values differ (problems matched by id; records are written as they finish)."""
    def by_k(run: Path) -> dict:
        lines = (run / "records.jsonl").read_text().splitlines() if (run / "records.jsonl").exists() else []
        return {r["problem_id"]: r.get("by_k") for r in map(json.loads, lines)}

    differ, jobs = [], 0
    for path in sorted((before / "multirun").rglob("summary.json")):
        rel = path.parent.relative_to(before)
        other = after / rel
        if not (other / "summary.json").exists():
            continue
        jobs += 1
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (path.parent, other))
        if sa.get("budgets") != sb.get("budgets") or by_k(path.parent) != by_k(other):
            differ.append(str(rel))
    return jobs, differ


if __name__ == "__main__":
    sys.exit(main())
