"""Check and measure a verifier on a finished run's stored pools: no policy server, seconds per run.

    lab offline multirun/pool64 verifier=plugin verifier.name=my_check          # an entry-point plug-in
    lab offline runs/bok hydra.searchpath=[pkg://my_check.conf] verifier=my_check verifier.noise=0.3
    lab offline runs/bok verifier=random --out runs/bok_random --threshold 0.5
    python -m search.offline ...                                                # the same

RUN_DIR is any run directory (``records.jsonl`` beside ``run_config.json``; best-of-k's pools are the natural input).
Every stored candidate is scored through the contract check a run applies: a broken score is one ``FAIL`` line naming
the problem, the candidate (with the start of its text) and the fix (exit 1). Then the verifier is measured against
the exact oracles on those candidates, as ``lab measure`` does on fresh ones: AUROC pooled and within a problem,
TPR/FPR at the threshold, the matched flip and Gaussian noise, and the best-of-k curves (coverage, argmax, majority,
weighted) its scores give on these pools, with bootstrap intervals, evaluated with the run's own fp_cost, seed and
weighted-vote draws (the verifier the run used reproduces the run's table).

Writes ``verifier_scores.parquet``, ``verifier_quality.json`` and ``best_of_k.json`` into ``--out`` (default:
``RUN_DIR/offline_<verifier>``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    from search.analysis.summaries import format_table
    from search.analysis.verifier_metrics import sentence
    from search.build import build_verifier
    from search.cli import composed
    from search.contracts import LabError, ScoreError
    from search.engine.measuring import write
    from search.engine.records import write_json_atomic
    from search.engine.stored_pools import load_pools, measure_pools, run_config

    ap = argparse.ArgumentParser(prog="lab offline", description=__doc__.split("\n\n")[0],
                                 epilog="other arguments are Hydra overrides naming the verifier: verifier=NAME ...")
    ap.add_argument("run_dir", type=Path, help="a finished run's directory (records.jsonl, run_config.json)")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: RUN_DIR/offline_<verifier>)")
    ap.add_argument("--threshold", type=float, default=0.5, help="accept threshold for TPR/FPR (default 0.5)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of problems (default 1000)")
    args, overrides = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        print(f"error: unknown option {bad[0]}: see lab offline --help", file=sys.stderr)
        return 2
    if not 0.0 <= args.threshold <= 1.0 or args.resamples < 1:
        print("error: --threshold must be in [0, 1] and --resamples >= 1", file=sys.stderr)
        return 2
    try:
        cfg = composed(overrides)
    except SystemExit as done:
        return int(done.code)
    try:
        task, pools = load_pools(args.run_dir)
        made = run_config(args.run_dir)       # the run's own evaluation settings, so its numbers are comparable
        verifier = build_verifier(cfg, task)[0]
        table, quality, budgets = measure_pools(task, verifier, pools, args.threshold,
                                                fp_cost=made.get("fp_cost", cfg.fp_cost), resamples=args.resamples,
                                                seed=made.get("seed", cfg.seed),
                                                weighted_draws=made.get("weighted_vote_draws", cfg.weighted_vote_draws))
    except ScoreError as err:
        print(f"FAIL {err.rule}: {err}{_text_of(err, pools)}", file=sys.stderr)
        return 1
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = quality["verifier"]
    out = args.out or args.run_dir / f"offline_{name}"
    write(out, table, quality)
    write_json_atomic(out / "best_of_k.json", {"run_dir": str(args.run_dir), "overrides": overrides,
                                               "budgets": budgets})
    print(f"{name} on {len(pools)} stored pools of {args.run_dir}: the contract holds on every candidate")
    for level, q in quality["levels"].items():
        within = q["within_problem_auroc"]
        print(f"{level:8s} n={q['n']:6d}  AUROC={_f(q['auroc'])}  within-problem AUROC={_f(within)}  "
              f"TPR={_f(q['tpr'])}  FPR={_f(q['fpr'])}")
    print(sentence(quality))
    print("best-of-k on these pools with its scores, mean over problems [95% bootstrap interval]:")
    print(format_table(budgets))
    print(f"wrote {out}/verifier_scores.parquet, verifier_quality.json, best_of_k.json")
    return 0


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _text_of(err, pools) -> str:
    """The start of the offending candidate's text, so the author can reproduce the call."""
    if err.candidate is None:
        return ""
    for stored in pools:
        if f"problem {stored.problem.id}" in str(err) and err.candidate < len(stored.candidates):
            return f" (its text starts {stored.candidates[err.candidate].text[:60]!r})"
    return ""


if __name__ == "__main__":
    sys.exit(main())
