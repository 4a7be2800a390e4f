"""Pools from elsewhere: check a pool file, import it as a run directory, or export a run's pools as a pool file.

    lab pools check samples.jsonl                            # read and validate; one line per finding
    lab pools import samples.jsonl --out runs/imported       # records.jsonl + summary.json, as a best-of-k run writes
    lab pools export /tmp/alloc_main /tmp/alloc_gauss --out pools.jsonl   # runs on the same pools -> one file

The file format is in ``search/engine/pool_files.py`` and docs/compute-allocation.md. Nothing here starts a server
or sends a generation request. A malformed file ends with one ``error:`` line naming the file, line and fix (exit 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli import exit_on_lab_error, fail


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it."""
    ap = argparse.ArgumentParser(prog="lab pools", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="read and validate a pool file (or run directories)")
    check.add_argument("sources", nargs="+", type=Path)
    imp = sub.add_parser("import", help="write a pool file as a run directory (records.jsonl, summary.json)")
    imp.add_argument("source", type=Path)
    imp.add_argument("--out", type=Path, required=True, help="the new run directory")
    imp.add_argument("--verifier", default=None, help="whose scores argmax and weighted vote use (default: first)")
    imp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    exp = sub.add_parser("export", help="write finished runs' pools (merged when they re-score one pool) as JSONL")
    exp.add_argument("sources", nargs="+", type=Path)
    exp.add_argument("--out", type=Path, required=True, help="the pool file to write (.jsonl)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    from search.engine import pool_files

    with exit_on_lab_error():
        if args.action == "check":
            pools = pool_files.load(args.sources)
            sizes = sorted({p.n for p in pools.problems})
            print(f"{len(pools.problems)} problems, pool sizes {sizes[0]}..{sizes[-1]}, verifiers: "
                  f"{', '.join(pools.verifiers) or 'none'}; mean pass rate "
                  f"{sum(p.pass_rate for p in pools.problems) / len(pools.problems):.3f}: the file is well-formed")
        elif args.action == "import":
            if args.resamples < 1:
                fail("--resamples must be >= 1")
            pools = pool_files.load([args.source])
            summary = pool_files.write_run_dir(pools, args.out, args.verifier, resamples=args.resamples)
            from search.analysis.summaries import format_table

            print(f"imported {summary['n_problems']} pools of {args.source} into {args.out} (verifier "
                  f"{summary['verifier']}); generation requests sent: 0")
            print(format_table(summary["budgets"]))
        else:
            if args.out.suffix != ".jsonl":
                fail(f"--out {args.out} must end in .jsonl (the export writes the JSONL shape)")
            pools = pool_files.load(args.sources)
            pool_files.write_jsonl(pools, args.out)
            print(f"wrote {len(pools.problems)} pools with verifiers {', '.join(pools.verifiers) or 'none'} "
                  f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
