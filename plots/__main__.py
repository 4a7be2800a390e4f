"""Plot a run's scaling curves.

    python -m plots RUN_DIR [--out DIR]
"""
import argparse
import sys
from pathlib import Path

from plots.run_curves import plot_run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots", description="Plot a run's scaling curves (PNG and SVG).")
    ap.add_argument("run_dir", type=Path, help="a run directory holding summary.json")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: the run directory)")
    args = ap.parse_args(argv)
    if not (args.run_dir / "summary.json").is_file():
        print(f"error: no summary.json in {args.run_dir}: give the output directory of a finished run", file=sys.stderr)
        return 2
    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
