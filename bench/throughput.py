"""Throughput of every search path against raw vLLM sampling, measured side by side on one server in one run.

    .venv/bin/python bench/throughput.py                          # starts a managed server on the tiny policy
    .venv/bin/python bench/throughput.py --base-url http://127.0.0.1:8000 --n-problems 64 --budget 16
    .venv/bin/python bench/throughput.py --in-flight 16/64,64/64,128/256   # problems/requests in flight, side by side

1. raw: plain sampling straight to the server's completions endpoint (no lab code): ``budget`` samples of each
   problem's prompt, the requests in flight together, exactly what best-of-k asks for; measured again right
   before every lab path, so each ratio compares two neighbouring measurements on a shared, noisy machine;
2. best-of-k through the lab (``search.engine.runner.run``: metered policy, verifier, per-k evaluation, records);
3. each step-wise strategy through the lab, with the exact process oracle (``--verifier prm``: the shipped PRM on
   its own vLLM server beside the policy's, PRM-guided search on one machine).

Generated tokens per second of each path, and its ratio to raw (targets: best-of-k >= 0.9, step-wise >= 0.8).
Each lab path also prints its requests and mean tokens per request, which is where step-wise searches lose: they
send many short requests (one step each) where best-of-k sends one long one per problem. A second table breaks each
path down (``Probe``): prompt tokens re-sent per generated token, the prefix cache's share of them and the most it
could serve, the share of the run with no request in flight, mean requests in flight, the client's CPU and the time
inside verifier calls. Each path's own requests are then replayed straight to the server (``replay``), none waiting
on another, which splits a path's gap into what its requests cost the server and what the search adds. The
generation cache is off, so every path really generates, and the prefix cache is emptied before each measurement.
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
BLOCK = 32
"""The managed tiny policy's KV block size (``block_size`` in conf/policy/tiny.yaml): the prefix cache's unit."""
TARGETS = {"best_of_k": 0.9, **{s: 0.8 for s in STRATEGIES}}
"""Ratio to raw each path should reach (issue 19: step-wise search at least 0.8x raw; it was 0.5)."""


def http_client(base_url: str, concurrency: int) -> httpx.Client:
    """A client with a connection for each of ``concurrency`` threads (httpx keeps at most 100 by default; more
    threads than connections failed with a read error on a closed socket)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(base_url=base_url, timeout=300, limits=limits)


def raw_throughput(base_url: str, model: str, prompts: list[str], n: int, max_tokens: int,
                   concurrency: int) -> tuple[int, float, int]:
    """(generated tokens, seconds, requests) for plain sampling of every prompt."""
    client = http_client(base_url, concurrency)

    def one(i_prompt):
        i, prompt = i_prompt
        body = {"model": model, "prompt": prompt, "n": n, "temperature": 1.0, "max_tokens": max_tokens,
                "seed": 1000 + i}
        return client.post("/v1/completions", json=body).json()["usage"]["completion_tokens"]

    t0 = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, enumerate(prompts)))
    return tokens, time.time() - t0, len(prompts)


def reset_prefix_cache(base_url: str) -> bool:
    """Empty the server's prefix cache (vLLM's dev-mode endpoint; the managed server here runs in dev mode), so each
    measurement starts cold whatever ran before it. False when the server does not offer it."""
    return httpx.post(f"{base_url}/reset_prefix_cache", timeout=60).status_code == 200


def replay(base_url: str, bodies: list[dict], concurrency: int) -> tuple[int, float]:
    """(generated tokens, seconds) of sending exactly these request bodies (a lab path's, in the order they started)
    straight to the server, ``concurrency`` in flight, with no lab code and no waiting on earlier answers: what the
    server does with the path's requests alone, so a path's ratio to its replay is what the lab's search itself
    costs (rounds waiting on each other, client work) and the replay's ratio to raw is what the requests' sizes
    cost on the server."""
    client = http_client(base_url, concurrency)

    def one(body):
        return client.post("/v1/completions", json=body).json()["usage"]["completion_tokens"]

    t0 = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, bodies))
    return tokens, time.time() - t0


class Probe:
    """Where a lab path's time goes, measured inside this process while it runs (the lab's own classes, timed in
    place and restored after; nothing is replaced). Over the span from the first policy request's start to the last
    one's end:

    - ``idle``: the share of it with no policy request in flight: the server has none of our work (stalls: the
      strategy scoring, selecting or waiting on its slowest problem between rounds);
    - ``reusable`` (``reusable()``): at most the share of the prompt tokens the prefix cache could have served;
    - ``in_flight``: mean policy requests in flight (summed request time over the span);
    - ``seqs_in_flight``: mean samples those requests ask for (each request's ``n`` over its time): what the engine
      can batch, at most the server's ``max_num_seqs`` per step;
    - ``client_cpu``: this process's CPU seconds over the span per second of it (lab code, HTTP client, JSON; on two
      cores every client CPU second is one the server does not get);
    - ``verifier_s``: seconds spent inside verifier calls, summed over threads (a served PRM's HTTP included)."""

    def __init__(self):
        self.requests: list[tuple[float, float, dict, list[str] | None]] = []
        """Each policy request: (start, end, the body sent, the completions' texts; None when it failed)."""
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
            answer = None
            try:
                answer = post(replicas, path, body)
                return answer
            finally:
                if replicas.what == "policy":
                    t1, c1 = time.perf_counter(), time.process_time()
                    texts = [c["text"] for c in answer["choices"]] if answer is not None else None
                    with probe._lock:
                        probe.requests.append((t0, t1, body, texts))
                        probe.cpu += [(t0, c0), (t1, c1)]

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

    def reusable(self, encode, block: int) -> float:
        """At most the share of prompt tokens vLLM's prefix cache could serve: those in whole ``block``-token blocks
        (the last prompt token is always computed) whose prefix an earlier request's prompt or prompt + completion
        already had, with nothing evicted; requests in the order they started, each one's completions counted as
        cached from its start (so an upper bound)."""
        seen: set[tuple] = set()
        total = hit = 0
        for _, _, body, completions in self.answered():
            prompt = body["prompt"]
            ids = encode(prompt)
            total += len(ids)
            for i in range(1, (len(ids) - 1) // block + 1):
                if tuple(ids[:i * block]) not in seen:
                    break
                hit += block
            for seq in [ids, *(encode(prompt + c) for c in completions)]:
                seen.update(tuple(seq[:i * block]) for i in range(1, len(seq) // block + 1))
        return hit / max(1, total)

    def answered(self) -> list[tuple[float, float, dict, list[str]]]:
        """The policy requests that got an answer, in the order they started."""
        return sorted((r for r in self.requests if r[3] is not None), key=lambda r: r[0])

    def summary(self) -> dict:
        if not self.requests:
            return {"idle": float("nan"), "in_flight": 0.0, "seqs_in_flight": 0.0, "client_cpu": float("nan"),
                    "verifier_s": self.verifier_s}
        spans = sorted((start, end) for start, end, _, _ in self.requests)
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
                "seqs_in_flight": sum((e - s) * int(body.get("n", 1)) for s, e, body, _ in self.requests) / span,
                "client_cpu": (cpu[-1][1] - cpu[0][1]) / span, "verifier_s": self.verifier_s}


def lab_throughput(base_url: str, model: str, n_params: int, strategy: str, verifier: str, n_problems: int,
                   budget: int, concurrency: int, max_requests: int) -> dict:
    """Generated tokens and solve time of one lab run (server start excluded: the server is already up), with the
    ledger's prompt tokens (re-sent prefixes included) and the ``Probe``'s breakdown."""
    overrides = [f"strategy={strategy}", f"verifier={verifier}", f"strategy.budget={budget}",
                 f"n_problems={n_problems}", "cache_path=null", "policy=remote", f"policy.base_urls=[{base_url}]",
                 f"policy.model={model}", f"policy.n_params={n_params}", f"concurrency={concurrency}",
                 f"policy.max_concurrency={max_requests}",
                 "bootstrap_resamples=100", "weighted_vote_draws=100", "seed=1"]
    cfg = compose(overrides)
    with tempfile.TemporaryDirectory() as out, Probe() as probe:
        summary = run(cfg, Path(out))
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(resolve("tiny-policy") / "tokenizer.json"))
    reusable = probe.reusable(lambda text: tokenizer.encode(text).ids, BLOCK)
    totals = summary["ledger_totals"]
    return {"tokens": totals["completion_tokens"], "seconds": summary["phases_s"]["solve"],
            "requests": totals["policy_requests"], "accuracy": summary["strategy_accuracy"],
            "prompt_tokens": totals["prompt_tokens"], "cached_prompt_tokens": totals["cached_prompt_tokens"],
            "reusable": reusable, "bodies": [body for _, _, body, _ in probe.answered()],
            **probe.summary()}


def in_flight_table(base_url: str, model: str, n_params: int, prompts: list[str], args, settings) -> None:
    """Each step-wise path at each (problems, requests) in flight, one after another on the server, in two rounds
    of opposite orders, each round after its own raw measurement; tokens/s, its ratio to that raw rate, and what
    the engine had in flight."""
    print(f"{args.n_problems} problems, budget {args.budget}; problems/requests in flight: "
          f"{', '.join(f'{p}/{r}' for p, r in settings)}; ratio = tokens/s over the round's raw tokens/s")
    print(f"{'path':<22}{'round':>6}{'problems':>9}{'requests':>9}{'tokens/s':>10}{'ratio':>7}{'in flight':>10}"
          f"{'seqs':>7}{'accuracy':>10}")
    for strategy in [s for s in args.strategies.split(",") if s]:
        for rnd, order in enumerate((settings, settings[::-1])):
            tokens, seconds, _ = raw_throughput(base_url, model, prompts, args.budget, 96, args.concurrency)
            for problems, requests in order:
                reset_prefix_cache(base_url)
                r = lab_throughput(base_url, model, n_params, strategy, args.verifier, args.n_problems,
                                   args.budget, problems, requests)
                rate = r["tokens"] / r["seconds"]
                print(f"{strategy:<22}{rnd + 1:>6}{problems:>9}{requests:>9}{rate:>10.0f}"
                      f"{rate / (tokens / seconds):>7.2f}{r['in_flight']:>10.1f}{r['seqs_in_flight']:>7.0f}"
                      f"{r['accuracy']:>10.3f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default=None, help="a running server (default: start a managed one)")
    ap.add_argument("--n-problems", type=int, default=128)
    ap.add_argument("--budget", type=int, default=16, help="samples per problem (the shared budget knob)")
    ap.add_argument("--concurrency", type=int, default=64, help="problems in flight in the lab, requests in raw")
    ap.add_argument("--max-requests", type=int, default=64,
                    help="policy requests in flight in the lab (policy.max_concurrency; the lab's default is 64)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--verifier", default="process_oracle", choices=("process_oracle", "prm"),
                    help="the step-wise paths' verifier: the exact process oracle (in process) or the shipped PRM "
                         "on its own vLLM server beside the policy's (PRM-guided search)")
    ap.add_argument("--in-flight", default="",
                    help="instead: settings PROBLEMS/REQUESTS in flight (e.g. 16/64,64/64; the lab's defaults are "
                         "concurrency=16 and policy.max_concurrency=64), each step-wise path run at every one in "
                         "turn after one raw measurement, two rounds in opposite orders")
    args = ap.parse_args(argv)
    try:
        settings = [tuple(int(x) for x in s.split("/")) for s in args.in_flight.split(",") if s]
        if any(len(s) != 2 or min(s) < 1 for s in settings):
            raise ValueError
    except ValueError:
        print(f"error: --in-flight {args.in_flight!r} is not a list of PROBLEMS/REQUESTS pairs: give e.g. "
              f"--in-flight 16/64,64/64", file=sys.stderr)
        return 2

    checkpoint = resolve("tiny-policy")
    model, n_params = "tiny-policy", count_params(checkpoint)
    from search.serving.vllm_server import served

    with served(args.base_url, checkpoint, model, env={"VLLM_SERVER_DEV_MODE": "1"}) as (base_url, _):
        prompts = [p.prompt for p in ArithTask().problems("eval", args.n_problems)]
        raw_throughput(base_url, model, prompts[:8], args.budget, 96, args.concurrency)       # warm-up
        if settings:
            in_flight_table(base_url, model, n_params, prompts, args, settings)
            return 0
        print(f"server {base_url}, {args.n_problems} problems, budget {args.budget}, concurrency {args.concurrency}, "
              f"policy requests in flight at most {args.max_requests}")
        print("each path runs right after its own raw measurement; ratio = path tokens/s over that raw tokens/s")
        print(f"{'path':<22}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}{'raw tok/s':>10}{'ratio':>7}{'target':>11}"
              f"{'requests':>10}{'tok/req':>9}{'accuracy':>10}")
        paths = [("best_of_k", "outcome_oracle")] + [(s, args.verifier) for s in args.strategies.split(",") if s]
        breakdown = []
        for strategy, verifier in paths:
            raw_tokens, raw_s, _ = raw_throughput(base_url, model, prompts, args.budget, 96, args.concurrency)
            raw = raw_tokens / raw_s
            cold = reset_prefix_cache(base_url)
            r = lab_throughput(base_url, model, n_params, strategy, verifier, args.n_problems, args.budget,
                               args.concurrency, args.max_requests)
            rate = r["tokens"] / r["seconds"]
            reset_prefix_cache(base_url)
            r["replay_tokens"], r["replay_s"] = replay(base_url, r.pop("bodies"), args.max_requests)
            ok = "ok" if rate / raw >= TARGETS[strategy] else "MISS"
            print(f"{strategy:<22}{r['tokens']:>9}{r['seconds']:>9.1f}{rate:>10.0f}{raw:>10.0f}{rate / raw:>7.2f}"
                  f"{'>=' + str(TARGETS[strategy]) + ' ' + ok:>11}{r['requests']:>10}"
                  f"{r['tokens'] / r['requests']:>9.1f}{r['accuracy']:>10.3f}", flush=True)
            breakdown.append((f"{strategy}+{verifier}", r | {"raw": raw}))
        if not cold:
            print("(this server has no /reset_prefix_cache: paths ran on the prefix cache the ones before left)")
        print("\nwhat the requests alone cost: replay = the path's own requests sent straight to the server, "
              f"{args.max_requests} in flight, no lab code, none waiting on another (cold prefix cache); "
              "lab/replay = what the search itself costs; replay/raw = what the requests' sizes cost on the server")
        print(f"{'path':<22}{'replay tok/s':>13}{'lab/replay':>11}{'replay/raw':>11}")
        for name, r in breakdown:
            rep = r["replay_tokens"] / r["replay_s"]
            print(f"{name.split('+')[0]:<22}{rep:>13.0f}{r['tokens'] / r['seconds'] / rep:>11.2f}"
                  f"{rep / r['raw']:>11.2f}")
        print("\nwhere the time goes (bench/throughput.py Probe): prompt/gen = prompt tokens sent per generated token "
              "(re-sent prefixes); cached = their share served from vLLM's prefix cache; reusable = at most the "
              "share it could serve (whole blocks an earlier request already had); idle = share of the run "
              "with no policy request in flight; in flight = mean requests in flight; seqs = mean samples they "
              "ask for (what the engine can batch, at most max_num_seqs); client CPU = this process's "
              "CPU seconds per second; verifier s = seconds inside verifier calls")
        print(f"{'path':<34}{'prompt/gen':>11}{'cached':>8}{'reusable':>9}{'idle':>7}{'in flight':>10}{'seqs':>7}"
              f"{'client CPU':>11}{'verifier s':>11}")
        for name, r in breakdown:
            print(f"{name:<34}{r['prompt_tokens'] / r['tokens']:>11.2f}"
                  f"{r['cached_prompt_tokens'] / max(1, r['prompt_tokens']):>8.2f}{r['reusable']:>9.2f}"
                  f"{r['idle']:>7.2f}"
                  f"{r['in_flight']:>10.1f}{r['seqs_in_flight']:>7.0f}{r['client_cpu']:>11.2f}"
                  f"{r['verifier_s']:>11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
