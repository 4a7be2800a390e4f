"""The same PRM inputs scored as many small pooling requests or as a few large ones, side by side on one server: does
a served PRM pay per request (then one request carrying many problems' candidates would speed PRM-guided search) or
per input?

    flock /work/heavy.lock .venv/bin/python bench/prm_requests.py RUN_DIR                 # a finished best-of-k run
    flock /work/heavy.lock .venv/bin/python bench/prm_requests.py RUN_DIR --inputs 2048 --rounds 3

The shipped PRM's server starts as the tiny world's (``managed_prm``'s defaults). Its inputs are the first
``inputs`` candidates of RUN_DIR's pools, rendered as the lab renders them (``PRMVerifier.render``). Each layout sends
every input once through the lab's own client (``Replicas``): ``per problem`` is one request per problem's candidates,
as many in flight as a run has problems in flight (what the lab does now); the others split the same inputs into
requests of a fixed size. Layouts take turns, in reverse order every other round; every layout's step scores are
compared with the first's.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.engine.stored_pools import load_pools  # noqa: E402
from search.serving.vllm_server import stop_all  # noqa: E402
from verifiers.prm import managed_prm  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a finished best-of-k run directory (records.jsonl)")
    ap.add_argument("--inputs", type=int, default=1024, help="candidates scored by each layout")
    ap.add_argument("--per-problem", type=int, default=8, help="candidates of each problem (a round's expansions)")
    ap.add_argument("--in-flight", type=int, default=64, help="requests in flight for the per-problem layout")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if not (args.run_dir / "records.jsonl").exists():
        print(f"error: {args.run_dir} has no records.jsonl: give a finished run's directory (outputs/...)",
              file=sys.stderr)
        return 2
    task, stored = load_pools(args.run_dir)
    verifier = managed_prm(task)
    texts = [verifier.render(sp.problem, c) for sp in stored for c in sp.candidates[:args.per_problem] if c.steps]
    texts = texts[:args.inputs]
    if len(texts) < args.inputs:
        print(f"error: {args.run_dir} has {len(texts)} candidates with steps, fewer than --inputs {args.inputs}: "
              f"give a larger run or a smaller --inputs", file=sys.stderr)
        return 2
    layouts = {"per problem": (args.per_problem, args.in_flight), "128 a request": (128, 8),
               "all in one": (len(texts), 1)}

    def score(size: int, in_flight: int) -> tuple[float, list]:
        bodies = [{"model": verifier.model, "task": "token_classify", "input": texts[i:i + size]}
                  for i in range(0, len(texts), size)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(in_flight) as pool:
            answers = list(pool.map(lambda body: verifier.http.post("/pooling", body), bodies))
        rows = [item["data"] for a in answers for item in sorted(a["data"], key=lambda d: d.get("index", 0))]
        return time.perf_counter() - t0, rows

    times: dict[str, list[float]] = {name: [] for name in layouts}
    rows: dict[str, list] = {}
    try:
        score(*layouts["per problem"])                      # starts the server and warms it
        for r in range(args.rounds):
            for name in (list(layouts) if r % 2 == 0 else list(layouts)[::-1]):
                seconds, rows[name] = score(*layouts[name])
                times[name].append(seconds)
                print(f"round {r + 1} {name}: {seconds:.2f} s", flush=True)
    finally:
        stop_all()
    first = next(iter(layouts))
    print(f"\nshipped PRM, {len(texts)} inputs ({args.per_problem} candidates of each problem), {args.rounds} rounds")
    print(f"{'layout':<16}{'requests':>9}{'inputs each':>12}{'in flight':>10}{'seconds':>22}{'inputs/s':>10}"
          f"{'vs ' + first:>16}  scores")
    best = {name: min(t) for name, t in times.items()}
    for name, (size, in_flight) in layouts.items():
        same = "identical" if rows[name] == rows[first] else "DIFFERENT"
        print(f"{name:<16}{-(-len(texts) // size):>9}{size:>12}{in_flight:>10}"
              f"{'/'.join(f'{t:.2f}' for t in times[name]):>22}{len(texts) / best[name]:>10.0f}"
              f"{best[first] / best[name]:>16.2f}  {same}")
    print("seconds: each round's time; inputs/s and the ratio from each layout's fastest round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
