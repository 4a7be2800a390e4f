"""Confidence-filtered vote on a finished run's pools: majority among the most confident share of each k-subset.

    python -m search.confidence_vote runs/conf_mean_logprob                   # keep 10%, 50% and all
    python -m search.confidence_vote runs/conf_mean_logprob --keep 0.25 --budgets 4,16,64 --draws 500

Reads ``records.jsonl`` (each pool's answers, grades and verifier scores: run it on a run whose verifier is a
confidence verifier, ``verifiers/confidence.py``) and prints, for every budget, the mean over problems of the
filtered vote at each ``--keep`` share (``search.analysis.filtered_vote``) beside the run's own argmax, majority and
weighted vote; writes the same table to ``confidence_vote.csv`` in the run directory. No server is needed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli import exit_on_lab_error


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m search.confidence_vote", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a finished run directory (records.jsonl)")
    p.add_argument("--keep", default="0.1,0.5,1.0", help="shares of each k-subset kept, comma-separated, in (0, 1]")
    p.add_argument("--budgets", default=None, help="budgets k, comma-separated (default: the run's own)")
    p.add_argument("--draws", type=int, default=1000, help="random k-subsets per problem and budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset draws")
    return p.parse_args(argv)


def table(run_dir: Path, keeps: list[float], budgets: list[int] | None, draws: int, seed: int):
    """One row per budget: the run's argmax, majority and weighted, and ``filtered_<keep>`` per keep share."""
    import numpy as np
    import pandas as pd

    from search.analysis.filtered_vote import filtered_vote_at_k
    from search.contracts import LabError
    from search.engine.records import RecordFile
    from search.seeding import derive_seed

    if not (run_dir / "records.jsonl").exists():
        raise LabError(f"{run_dir} has no records.jsonl: give a finished run directory (lab run ... "
                       f"hydra.run.dir=DIR)")
    records = [r for r in RecordFile(run_dir / "records.jsonl").records if r.get("by_k")]
    if not records:
        raise LabError(f"{run_dir} has no pool records: give a run of a pool strategy (strategy=best_of_k)")
    ks = budgets or records[0]["by_k"]["k"]
    n = min(r["n_samples"] for r in records)
    if max(ks) > n or min(ks) < 1:
        raise LabError(f"--budgets {ks} must lie in 1..{n} (the smallest pool of {run_dir})")
    rows = []
    for k in ks:
        row = {"k": k}
        for rule in ("argmax", "majority", "weighted"):
            if k in records[0]["by_k"]["k"]:
                at = records[0]["by_k"]["k"].index(k)
                row[rule] = float(np.mean([r["by_k"][rule][at] for r in records]))
        for keep in keeps:
            row[f"filtered_{keep:g}"] = float(np.mean([
                filtered_vote_at_k(r["pool"]["answer"], r["pool"]["score"], r["pool"]["correct"], k, keep, draws,
                                   derive_seed(seed, "filtered", r["problem_id"], k))[0] for r in records]))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with exit_on_lab_error():
        from search.contracts import LabError

        try:
            keeps = [float(x) for x in args.keep.split(",")]
            budgets = [int(x) for x in args.budgets.split(",")] if args.budgets else None
        except ValueError:
            raise LabError(f"--keep {args.keep!r} / --budgets {args.budgets!r}: give comma-separated numbers, e.g. "
                           f"--keep 0.1,0.5 --budgets 4,16") from None
        if not all(0 < x <= 1 for x in keeps) or args.draws < 2:
            raise LabError(f"--keep {args.keep} must be shares in (0, 1] and --draws ({args.draws}) at least 2")
        out = table(args.run_dir, keeps, budgets, args.draws, args.seed)
        print(out.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        out.to_csv(args.run_dir / "confidence_vote.csv", index=False)
        print(f"wrote {args.run_dir / 'confidence_vote.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
