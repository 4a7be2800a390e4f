"""Plot a run's scaling curves, or a collected sweep table's noise and reward curves.

    python -m plots RUN_DIR [--out DIR]                  # scaling.png/svg of one run
    python -m plots SWEEP_DIR/results.parquet --out DIR  # every figure the table supports (plots/sweep_curves.py)
"""
import argparse
import sys
from pathlib import Path

from plots.run_curves import plot_run
from plots.sweep_curves import plot_table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots", description="Plot a run's scaling curves (PNG and SVG).")
    ap.add_argument("run_dir", type=Path, help="a run directory holding summary.json, or a results.parquet table")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: the run directory)")
    args = ap.parse_args(argv)
    if args.run_dir.suffix == ".parquet" and args.run_dir.is_file():
        for figure in plot_table(args.run_dir, args.out or args.run_dir.parent):
            print(figure.paths[0])
        return 0
    if not (args.run_dir / "summary.json").is_file():
        print(f"error: no summary.json in {args.run_dir}: give the output directory of a finished run or a "
              f"results.parquet written by python -m search.collect", file=sys.stderr)
        return 2
    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
