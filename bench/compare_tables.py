"""Are two work directories' tables the same? For a change that must not move a number (a refactor).

    .venv/bin/python bench/sweep_bench.py --workdir /tmp/before          # on the old commit
    .venv/bin/python bench/sweep_bench.py --workdir /tmp/after           # on the new one (copy the cache over
    .venv/bin/python bench/compare_tables.py /tmp/before /tmp/after      #  to skip generation)

Compares every standard sweep's results.parquet and results_by_difficulty.parquet exactly (pandas frame-equal),
leaving out the columns that record a job's own history rather than its result (wall time, and what the generation
cache answered), and the main job's per-budget table and policy profile when both directories have ``main_job/``.
Exit code 0 when everything is equal, 1 otherwise.
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
    same = True
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
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
