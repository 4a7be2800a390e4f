"""Monte-Carlo process labels for training a PRM, from the tiny policy's own solutions (Math-Shepherd's recipe).

    python -m search.prm_labels --problems 2500 --out prm_labels.jsonl     # or: lab labels ...

The recipe and the label format are in ``search.training.labels``; this command samples training problems on a
managed (or given) tiny-policy server behind the generation cache, writes the labels and prints how well they agree
with the task's exact step checker.
"""
from __future__ import annotations

import argparse
import json
import sys

from search.contracts import LabError
from search.training.labels import agreement, label_tiny_policy, write_jsonl


def main(argv: list[str] | None = None) -> int:
    """CLI: label the tiny policy's solutions of training problems and print the agreement with the checker."""
    ap = argparse.ArgumentParser(prog="python -m search.prm_labels", description=main.__doc__)
    ap.add_argument("--problems", type=int, default=2500, help="training-split problems to sample")
    ap.add_argument("--samples", type=int, default=4, help="solutions sampled per problem")
    ap.add_argument("--rollouts", type=int, default=8,
                    help="completions from each step (0: none, only exact step labels and outcomes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="prm_labels.jsonl")
    ap.add_argument("--policy-url", default=None, help="an already running tiny-policy server (default: start one)")
    ap.add_argument("--cache", default=".lab_cache/generations.sqlite", help="generation cache ('' = off)")
    args = ap.parse_args(argv)
    try:
        labels = label_tiny_policy(args.problems, args.samples, args.rollouts, args.seed, args.cache or None,
                                   args.policy_url)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_jsonl(labels, args.out)
    print(json.dumps(agreement(labels), indent=2))
    print(f"wrote {len(labels)} labelled solutions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
