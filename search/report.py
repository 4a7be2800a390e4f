"""Write a sweep's report page: collect its table when it is missing or stale, then draw every figure and write
report.md and report.html beside it.

    python -m search.report multirun/noise_flip          # or: lab report multirun/noise_flip

The page itself (figures, one sentence each, config, the closed-form check, tables) is ``plots.report``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plots.report import table_is_stale, write_report
from search.analysis.tables import write_tables
from search.cli import fail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a sweep directory (multirun/NAME) holding finished jobs")
    args = ap.parse_args(argv)
    if not args.sweep_dir.is_dir() or not (any(args.sweep_dir.rglob("summary.json"))
                                           or (args.sweep_dir / "results.parquet").exists()):
        fail(f"no finished job (summary.json) under {args.sweep_dir}: give the directory of a sweep, e.g. "
             f"multirun/noise_flip after python -m search.run -m +sweep=noise_flip")
    if any(args.sweep_dir.rglob("summary.json")) and table_is_stale(args.sweep_dir):
        write_tables(args.sweep_dir, args.sweep_dir)
    for path in write_report(args.sweep_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
