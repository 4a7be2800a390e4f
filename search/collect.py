"""Collect a sweep into one tidy table: one row per (job, selection rule, budget k).

    python -m search.collect multirun/2026-11-23/11-00-00        # or: lab collect DIR
    # writes results.parquet and results.csv there (and results_by_difficulty.* when jobs have difficulty bins)

The table and its columns are ``search.analysis.tables``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.analysis.tables import collect, read_summaries, write_tables


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.collect", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a sweep (or run) directory holding summary.json files")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: the sweep directory)")
    args = ap.parse_args(argv)
    summaries = read_summaries(args.sweep_dir) if args.sweep_dir.is_dir() else []
    table = collect(args.sweep_dir, summaries=summaries) if summaries else None
    if table is None or table.empty:
        print(f"error: no finished job (summary.json with per-budget rows) under {args.sweep_dir}: give the "
              f"directory of a sweep (multirun/DATE/TIME) or a run", file=sys.stderr)
        return 2
    for line in write_tables(args.sweep_dir, args.out or args.sweep_dir, table, summaries):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
