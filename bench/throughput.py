"""Throughput of every search path against raw vLLM sampling, measured side by side on one server in one run.

    .venv/bin/python bench/throughput.py                          # starts a managed server on the tiny policy
    .venv/bin/python bench/throughput.py --base-url http://127.0.0.1:8000 --n-problems 64 --budget 16

1. raw: plain sampling straight to the server's completions endpoint (no lab code): ``budget`` samples of each
   problem's prompt, the requests in flight together, exactly what best-of-k asks for; measured again right
   before every lab path, so each ratio compares two neighbouring measurements on a shared, noisy machine;
2. best-of-k through the lab (``search.engine.runner.run``: metered policy, verifier, per-k evaluation, records);
3. each step-wise strategy through the lab, with the exact process oracle (``--verifier prm``: the shipped PRM on
   its own vLLM server beside the policy's, PRM-guided search on one machine).

Generated tokens per second of each path, and its ratio to raw (targets: best-of-k >= 0.9, step-wise >= 0.8).
Each lab path also prints its requests and mean tokens per request, which is where step-wise searches lose: they
send many short requests (one step each) where best-of-k sends one long one per problem. A second table breaks each
path down (``Probe``): prompt tokens re-sent per generated token and the prefix cache's share of them, the share of
the run with no request in flight, mean requests in flight, the client's CPU and the time inside verifier calls. The
generation cache is off, so every path really generates.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.serving.checkpoint import count_params, resolve  # noqa: E402
from search.build import compose  # noqa: E402
from search.engine.runner import run  # noqa: E402
from search.tasks.arith import ArithTask  # noqa: E402

STRATEGIES = ("beam_search", "dvts", "mcts", "particle_filtering")
TARGETS = {"best_of_k": 0.9, **{s: 0.8 for s in STRATEGIES}}
"""Ratio to raw each path should reach (issue 19: step-wise search at least 0.8x raw; it was 0.5)."""


def raw_throughput(base_url: str, model: str, prompts: list[str], n: int, max_tokens: int,
                   concurrency: int) -> tuple[int, float, int]:
    """(generated tokens, seconds, requests) for plain sampling of every prompt."""
    client = httpx.Client(base_url=base_url, timeout=300)

    def one(i_prompt):
        i, prompt = i_prompt
        body = {"model": model, "prompt": prompt, "n": n, "temperature": 1.0, "max_tokens": max_tokens,
                "seed": 1000 + i}
        return client.post("/v1/completions", json=body).json()["usage"]["completion_tokens"]

    t0 = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, enumerate(prompts)))
    return tokens, time.time() - t0, len(prompts)


class Probe:
    """Where a lab path's time goes, measured inside this process while it runs (the lab's own classes, timed in
    place and restored after; nothing is replaced). Over the span from the first policy request's start to the last
    one's end:

    - ``idle``: the share of it with no policy request in flight: the server has none of our work (stalls: the
      strategy scoring, selecting or waiting on its slowest problem between rounds);
    - ``in_flight``: mean policy requests in flight (summed request time over the span);
    - ``client_cpu``: this process's CPU seconds over the span per second of it (lab code, HTTP client, JSON; on two
      cores every client CPU second is one the server does not get);
    - ``verifier_s``: seconds spent inside verifier calls, summed over threads (a served PRM's HTTP included)."""

    def __init__(self):
        self.intervals: list[tuple[float, float]] = []
        self.cpu: list[tuple[float, float]] = []            # (wall, process CPU) at each policy request's start/end
        self.verifier_s = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> "Probe":
        from search.ledger import MeteredVerifier
        from search.serving.http import Replicas

        self._saved = (Replicas.post, MeteredVerifier.score)
        post, score, probe = *self._saved, self

        def timed_post(replicas, path, body):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return post(replicas, path, body)
            finally:
                if replicas.what == "policy":
                    with probe._lock:
                        probe.intervals.append((t0, time.perf_counter()))
                        probe.cpu += [(t0, c0), (time.perf_counter(), time.process_time())]

        def timed_score(metered, problem, candidates):
            t0 = time.perf_counter()
            try:
                return score(metered, problem, candidates)
            finally:
                with probe._lock:
                    probe.verifier_s += time.perf_counter() - t0

        Replicas.post, MeteredVerifier.score = timed_post, timed_score
        return self

    def __exit__(self, *exc) -> None:
        from search.ledger import MeteredVerifier
        from search.serving.http import Replicas

        Replicas.post, MeteredVerifier.score = self._saved

    def summary(self) -> dict:
        if not self.intervals:
            return {"idle": float("nan"), "in_flight": 0.0, "client_cpu": float("nan"), "verifier_s": self.verifier_s}
        spans = sorted(self.intervals)
        start, end = spans[0][0], max(e for _, e in spans)
        covered, cur_s, cur_e = 0.0, spans[0][0], spans[0][1]
        for s, e in spans[1:]:
            if s > cur_e:
                covered, cur_s, cur_e = covered + cur_e - cur_s, s, e
            else:
                cur_e = max(cur_e, e)
        covered += cur_e - cur_s
        span = max(end - start, 1e-9)
        cpu = sorted(self.cpu)
        return {"idle": 1 - covered / span, "in_flight": sum(e - s for s, e in spans) / span,
                "client_cpu": (cpu[-1][1] - cpu[0][1]) / span, "verifier_s": self.verifier_s}


def lab_throughput(base_url: str, model: str, n_params: int, strategy: str, verifier: str, n_problems: int,
                   budget: int, concurrency: int) -> dict:
    """Generated tokens and solve time of one lab run (server start excluded: the server is already up), with the
    ledger's prompt tokens (re-sent prefixes included) and the ``Probe``'s breakdown."""
    overrides = [f"strategy={strategy}", f"verifier={verifier}", f"strategy.budget={budget}",
                 f"n_problems={n_problems}", "cache_path=null", "policy=remote", f"policy.base_urls=[{base_url}]",
                 f"policy.model={model}", f"policy.n_params={n_params}", f"concurrency={concurrency}",
                 "bootstrap_resamples=100", "weighted_vote_draws=100", "seed=1"]
    cfg = compose(overrides)
    with tempfile.TemporaryDirectory() as out, Probe() as probe:
        summary = run(cfg, Path(out))
    totals = summary["ledger_totals"]
    return {"tokens": totals["completion_tokens"], "seconds": summary["phases_s"]["solve"],
            "requests": totals["policy_requests"], "accuracy": summary["strategy_accuracy"],
            "prompt_tokens": totals["prompt_tokens"], "cached_prompt_tokens": totals["cached_prompt_tokens"],
            **probe.summary()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default=None, help="a running server (default: start a managed one)")
    ap.add_argument("--n-problems", type=int, default=128)
    ap.add_argument("--budget", type=int, default=16, help="samples per problem (the shared budget knob)")
    ap.add_argument("--concurrency", type=int, default=64, help="problems in flight in the lab, requests in raw")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--verifier", default="process_oracle", choices=("process_oracle", "prm"),
                    help="the step-wise paths' verifier: the exact process oracle (in process) or the shipped PRM "
                         "on its own vLLM server beside the policy's (PRM-guided search)")
    args = ap.parse_args(argv)

    checkpoint = resolve("tiny-policy")
    model, n_params = "tiny-policy", count_params(checkpoint)
    from search.serving.vllm_server import served

    with served(args.base_url, checkpoint, model) as (base_url, _):
        prompts = [p.prompt for p in ArithTask().problems("eval", args.n_problems)]
        raw_throughput(base_url, model, prompts[:8], args.budget, 96, args.concurrency)       # warm-up
        print(f"server {base_url}, {args.n_problems} problems, budget {args.budget}, concurrency {args.concurrency}")
        print("each path runs right after its own raw measurement; ratio = path tokens/s over that raw tokens/s")
        print(f"{'path':<22}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}{'raw tok/s':>10}{'ratio':>7}{'target':>11}"
              f"{'requests':>10}{'tok/req':>9}{'accuracy':>10}")
        paths = [("best_of_k", "outcome_oracle")] + [(s, args.verifier) for s in args.strategies.split(",") if s]
        breakdown = []
        for strategy, verifier in paths:
            raw_tokens, raw_s, _ = raw_throughput(base_url, model, prompts, args.budget, 96, args.concurrency)
            raw = raw_tokens / raw_s
            r = lab_throughput(base_url, model, n_params, strategy, verifier, args.n_problems, args.budget,
                               args.concurrency)
            rate = r["tokens"] / r["seconds"]
            ok = "ok" if rate / raw >= TARGETS[strategy] else "MISS"
            print(f"{strategy:<22}{r['tokens']:>9}{r['seconds']:>9.1f}{rate:>10.0f}{raw:>10.0f}{rate / raw:>7.2f}"
                  f"{'>=' + str(TARGETS[strategy]) + ' ' + ok:>11}{r['requests']:>10}"
                  f"{r['tokens'] / r['requests']:>9.1f}{r['accuracy']:>10.3f}", flush=True)
            breakdown.append((f"{strategy}+{verifier}", r))
        print("\nwhere the time goes (bench/throughput.py Probe): prompt/gen = prompt tokens sent per generated token "
              "(re-sent prefixes); cached = their share served from vLLM's prefix cache; idle = share of the run "
              "with no policy request in flight; in flight = mean requests in flight; client CPU = this process's "
              "CPU seconds per second; verifier s = seconds inside verifier calls")
        print(f"{'path':<34}{'prompt/gen':>11}{'cached':>8}{'idle':>7}{'in flight':>10}{'client CPU':>11}"
              f"{'verifier s':>11}")
        for name, r in breakdown:
            print(f"{name:<34}{r['prompt_tokens'] / r['tokens']:>11.2f}"
                  f"{r['cached_prompt_tokens'] / max(1, r['prompt_tokens']):>8.2f}{r['idle']:>7.2f}"
                  f"{r['in_flight']:>10.1f}{r['client_cpu']:>11.2f}{r['verifier_s']:>11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
