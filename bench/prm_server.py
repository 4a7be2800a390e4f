"""The shipped PRM's pooling server under vLLM's defaults and under the tiny world's settings, side by side: start
time, scoring time and how far the scores move.

    flock /work/heavy.lock .venv/bin/python bench/prm_server.py RUN_DIR              # a finished best-of-k run
    flock /work/heavy.lock .venv/bin/python bench/prm_server.py RUN_DIR --problems 60 --rounds 2

Each setting's server starts alone (the other's is stopped), in turns, ``rounds`` times. ``start s`` is the time of
the first score call, which starts the server; ``score s`` is scoring the first ``problems`` pools of RUN_DIR (every
candidate, one call per problem, as a best-of-k run does). At the end, every step score of the last round of each
setting is compared with the defaults': the largest difference and the share that are bit-identical.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.engine.stored_pools import load_pools  # noqa: E402
from search.serving.vllm_server import TINY_SERVER_ARGS, TINY_SERVER_ENV, stop_all  # noqa: E402
from verifiers.prm import managed_prm  # noqa: E402

SETTINGS = {"default": ((), None), "tiny": (TINY_SERVER_ARGS, dict(TINY_SERVER_ENV))}
"""vLLM's own flags and process layout, and the tiny world's (eager, the worker inside the engine core)."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a finished best-of-k run directory (records.jsonl)")
    ap.add_argument("--problems", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    if not (args.run_dir / "records.jsonl").exists():
        print(f"error: {args.run_dir} has no records.jsonl: give a finished run's directory (outputs/...)",
              file=sys.stderr)
        return 2
    task, stored = load_pools(args.run_dir)
    stored = stored[:args.problems]
    scores: dict[str, np.ndarray] = {}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    try:
        for r in range(args.rounds):
            for name, (extra_args, env) in SETTINGS.items():
                verifier = managed_prm(task, extra_args=extra_args, env=env)
                t0 = time.time()
                verifier.score(stored[0].problem, stored[0].candidates[:1])
                start = time.time() - t0
                t0 = time.time()
                steps = [verifier.score(sp.problem, sp.candidates).steps for sp in stored]
                score = time.time() - t0
                scores[name] = np.concatenate([np.asarray(s, dtype=float) for pool in steps for s in pool if len(s)])
                times[name].append((start, score))
                print(f"round {r + 1} {name}: start {start:.1f} s, score {score:.1f} s", flush=True)
                stop_all()
    finally:
        stop_all()
    print(f"\nshipped PRM, {len(stored)} problems x {len(stored[0].candidates)} candidates, {args.rounds} rounds")
    print(f"{'setting':<10}{'start s':>16}{'score s':>16}  flags")
    for name, (extra_args, env) in SETTINGS.items():
        st = "/".join(f"{a:.1f}" for a, _ in times[name])
        sc = "/".join(f"{b:.1f}" for _, b in times[name])
        print(f"{name:<10}{st:>16}{sc:>16}  {' '.join([*extra_args, *(f'{k}={v}' for k, v in (env or {}).items())])}")
    diff = np.abs(scores["tiny"] - scores["default"])
    print(f"step scores: {len(diff)}, largest difference {diff.max():.2e}, bit-identical {np.mean(diff == 0):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
