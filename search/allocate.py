"""Spending compute well, from existing pools: the allocation report (compute-optimal strategy by difficulty,
adaptive budgets, early stopping), with no generation request.

    lab allocate /tmp/alloc_main /tmp/alloc_gauss --verifier outcome_oracle+gaussian --out reports/alloc
    lab allocate pools.jsonl --out reports/alloc                    # a pool file from any engine (lab pools)

SOURCES are one pool file (.jsonl/.parquet, docs/compute-allocation.md) or run directories of best-of-k runs on the
same pools (merged: one verifier per run). Writes allocation.json, report.md and the figures (PNG and SVG) into
--out. It reads pools only: no policy is built, no server is started.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from search.cli import exit_on_lab_error, fail

STOP_THRESHOLDS = (0.8, 0.9, 0.95, 0.99, 0.999)
"""Adaptive-Consistency posterior thresholds evaluated."""
ESC_WINDOWS = (2, 3, 4, 6, 8)
"""ESC window sizes evaluated."""
CONFIDENCE_THRESHOLDS = (0.5, 0.7, 0.9)
"""Score thresholds of the confidence rules evaluated (confident: score to reach; consensus: weight share)."""


def parse(argv: list[str] | None):
    """The command line."""
    ap = argparse.ArgumentParser(prog="lab allocate", description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", type=Path, help="a pool file, or run directories on the same pools")
    ap.add_argument("--out", type=Path, required=True, help="output directory (allocation.json, report.md, PNGs)")
    ap.add_argument("--verifier", action="append", default=None,
                    help="a verifier whose scores are a strategy and a signal (repeatable; default: every one)")
    ap.add_argument("--bon-verifier", default=None, help="the verifier of the best-of-N baseline (default: first)")
    ap.add_argument("--stop-verifier", default=None,
                    help="whose scores the confidence stopping rules read (default: the best-of-N verifier)")
    ap.add_argument("--weighted-draws", type=int, default=300,
                    help="k-subsets per k for the weighted-vote rules (Monte Carlo; 0 leaves them out; default 300)")
    ap.add_argument("--m", type=int, default=4, help="samples per problem a test-time signal reads (default 4)")
    ap.add_argument("--bins", type=int, default=4, help="difficulty bins (default 4)")
    ap.add_argument("--splits", type=int, default=50, help="train/test halvings averaged (default 50)")
    ap.add_argument("--replicates", type=int, default=400, help="halvings x bootstraps for intervals (default 400)")
    ap.add_argument("--draws", type=int, default=300, help="orderings per pool for early stopping (default 300)")
    ap.add_argument("--cap", type=int, default=None, help="early stopping's sample cap (default: the pool size)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(sys.argv[1:] if argv is None else argv)


def main(argv: list[str] | None = None) -> int:
    """Compute the allocation analysis, write allocation.json, and the report page with its figures."""
    args = parse(argv)
    for name in ("m", "bins", "splits", "replicates", "draws", "weighted_draws"):
        low = 0 if name in ("m", "weighted_draws") else 1
        if getattr(args, name) < low:
            fail(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    t0 = time.time()
    from search.analysis import allocation, early_stopping as es
    from search.engine import pool_files
    from search.engine.records import write_json_atomic

    with exit_on_lab_error():
        pools = pool_files.load(args.sources)
    names = pools.verifiers
    chosen = args.verifier if args.verifier is not None else names
    unknown = [v for v in chosen + [x for x in (args.bon_verifier, args.stop_verifier) if x] if v not in names]
    if unknown:
        fail(f"no scores from verifier {unknown[0]!r} in {pools.source}: choose among {', '.join(names) or '(none)'}")
    if not chosen:
        fail(f"{pools.source} has no verifier scores: best-of-N needs a verifier; add scores to the pool file "
             f"(samples[].scores) or give a run scored by a verifier")
    bon = args.bon_verifier or chosen[0]
    if bon not in chosen:
        chosen = [bon] + chosen
    problems = pools.problems
    n = min(p.n for p in problems)
    if len(problems) < 8:
        fail(f"{len(problems)} problems are too few to halve into difficulty bins: give at least 8")
    if args.m >= n:
        fail(f"--m {args.m} leaves no sample of pools of {n} for the strategies: choose --m below {n}")
    cap = args.cap or n
    if not 1 <= cap <= n:
        fail(f"--cap {cap} must lie in 1..{n} (the smallest pool)")
    budgets = allocation.grid(n)
    settings = allocation.Settings(m=args.m, n_bins=args.bins, splits=args.splits, replicates=args.replicates,
                                   seed=args.seed, weighted_draws=args.weighted_draws)
    res = allocation.analyse(problems, chosen, bon, budgets, settings)
    rules = ([es.StopRule("adaptive", cap, threshold=t) for t in STOP_THRESHOLDS]
             + [es.StopRule("esc", cap, window=w) for w in ESC_WINDOWS if w <= cap]
             + [es.StopRule("confident", cap, threshold=t) for t in CONFIDENCE_THRESHOLDS]
             + [es.StopRule("consensus", cap, threshold=t, min_samples=2) for t in CONFIDENCE_THRESHOLDS])
    res["early_stopping"] = es.summarize_rules(problems, rules, args.stop_verifier or bon, draws=args.draws,
                                               seed=args.seed)
    res.update(source=pools.source, pool_size=n, verifiers=chosen, generation_requests=0,
               wall_s=round(time.time() - t0, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "allocation.json", res)
    from plots.allocation_report import write_report

    written = write_report(args.out)
    f = res["figures"]
    B = budgets[len(budgets) // 2]
    print(f"{len(problems)} pools of {n} from {pools.source}; verifiers {', '.join(chosen)}; {res['wall_s']} s")
    print(f"at {B} samples per problem: best-of-N {f[f'bon@{B}']['mean']:.3f}, best single "
          f"{f[f'single@{B}']['mean']:.3f}, compute-optimal "
          + ", ".join(f"{s} {f[f'opt:{s}@{B}']['mean']:.3f}" for s in res["signals"]
                      if f[f"opt:{s}@{B}"]["mean"] == f[f"opt:{s}@{B}"]["mean"]))
    print(f"generation requests sent: 0 (read existing pools only); wrote {', '.join(str(p) for p in written[:1])} "
          f"and {len(written) - 1} figure files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
