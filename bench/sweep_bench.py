"""Benchmark the standard sweep: what the generation cache saves, and where the wall time goes.

    .venv/bin/python bench/sweep_bench.py                      # all standard presets, fresh work dir, cold cache
    .venv/bin/python bench/sweep_bench.py --sweeps noise_flip,fp_cost --set n_problems=50
    .venv/bin/python bench/sweep_bench.py --readme-figures plots/figures     # regenerate the README's figures

Runs each preset exactly as a user does (``python -m search.run -m +sweep=NAME``, then ``python -m search.report``)
in one fresh working directory, so the first preset starts from an empty generation cache and later presets reuse
its pools. Prints, per preset and in total, the generation requests and generated tokens the sweep needed against
what regenerating every cell (every job drawing its own pools) would need, and the wall time of each phase:
process start and config, server start, solving (generation, scoring, per-k evaluation), summarising (bootstrap),
and the report (collect, figures, page). All numbers come from this run's summaries and clocks.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STANDARD = ("compute", "noise_flip", "noise_contamination", "noise_gaussian", "noise_spread", "fp_cost")
"""The standard sweep: every best-of-k preset in conf/sweep/, the order chosen so pools are drawn before they are
reused (``strategies``, the step-wise comparison, is its own run: ``--sweeps strategies``)."""
README_FIGURES = {
    "compute": ("accuracy_vs_compute", "coverage_fit"),
    "noise_flip": ("noise_vs_k_argmax", "accuracy_vs_noise"),
    "noise_contamination": ("noise_vs_k_argmax",),
    "noise_spread": ("accuracy_vs_kl",),
    "fp_cost": ("reward_vs_k",),
    "strategies": ("strategies_vs_compute", "strategies_by_difficulty"),
}
"""The figures the README shows, per preset; ``--readme-figures DIR`` copies them there as PRESET-NAME.png."""


def run_preset(name: str, workdir: Path, extra: list[str]) -> dict:
    """Run one preset and its report; the measurements of both."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "search.run", "-m", f"+sweep={name}", *extra]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    sweep_s = time.time() - t0
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {done.returncode}): " + " | ".join(tail))
    t1 = time.time()
    report = subprocess.run([sys.executable, "-m", "search.report", f"multirun/{name}"], cwd=workdir,
                            capture_output=True, text=True)
    report_s = time.time() - t1
    if report.returncode != 0:
        raise SystemExit(f"error: report of {name} failed: {report.stderr.strip().splitlines()[-1:]}")
    summaries = [json.loads(p.read_text()) for p in sorted((workdir / "multirun" / name).rglob("summary.json"))]
    phases = {key: sum(s["phases_s"][key] for s in summaries) for key in ("setup", "server_start", "solve",
                                                                           "summarize")}
    return {
        "sweep": name,
        "jobs": len(summaries),
        "requests": sum(s["generation_requests"] for s in summaries),
        "tokens": sum(s["generated_tokens"] for s in summaries),
        "requests_every_cell": sum(s["ledger_totals"]["policy_requests"] for s in summaries),
        "tokens_every_cell": sum(s["ledger_totals"]["completion_tokens"] for s in summaries),
        "sweep_s": sweep_s,
        "process_s": sweep_s - sum(s["wall_s"] for s in summaries),
        **{f"{k}_s": v for k, v in phases.items()},
        "report_s": report_s,
    }


def print_table(rows: list[dict]) -> None:
    total = {"sweep": "total", **{k: sum(r[k] for r in rows) for k in rows[0] if k != "sweep"}}
    print("\ngeneration: what the sweep sent to the policy against regenerating every cell")
    print(f"{'sweep':<20}{'jobs':>5}{'requests':>10}{'every cell':>12}{'ratio':>8}"
          f"{'tokens':>12}{'every cell':>12}{'ratio':>8}")
    for r in rows + [total]:
        print(f"{r['sweep']:<20}{r['jobs']:>5}{r['requests']:>10}{r['requests_every_cell']:>12}"
              f"{r['requests'] / max(1, r['requests_every_cell']):>8.3f}{r['tokens']:>12}"
              f"{r['tokens_every_cell']:>12}{r['tokens'] / max(1, r['tokens_every_cell']):>8.3f}")
    print("\nwall time (s) of each phase, summed over the jobs of a sweep")
    cols = ("sweep_s", "process_s", "setup_s", "server_start_s", "solve_s", "summarize_s", "report_s")
    print(f"{'sweep':<20}" + "".join(f"{c[:-2]:>14}" for c in cols))
    for r in rows + [total]:
        print(f"{r['sweep']:<20}" + "".join(f"{r[c]:>14.1f}" for c in cols))
    print("process: interpreter, imports and Hydra outside the jobs; setup: config, verifier, problem set; "
          "solve: generation, scoring and per-k evaluation (server start excluded); summarize: bootstrap "
          "intervals; report: collect, figures and the report page")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweeps", default=",".join(STANDARD), help="comma-separated presets from conf/sweep/")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="working directory (default: a fresh temporary one, so the cache starts cold)")
    ap.add_argument("--readme-figures", type=Path, default=None,
                    help="copy the README's figures of these sweeps into this directory (plots/figures)")
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="an override added to every sweep, e.g. --set n_problems=50 (repeatable)")
    args = ap.parse_args(argv)
    known = {p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "sweep").glob("*.yaml")}
    names = [s for s in args.sweeps.split(",") if s]
    unknown = [s for s in names if s not in known]
    if unknown:
        print(f"error: unknown sweep {', '.join(unknown)}: choose from {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweep_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work dir {workdir} (reports: multirun/NAME/report.html)")
    rows = []
    for name in names:
        rows.append(run_preset(name, workdir, args.extra))
        r = rows[-1]
        print(f"{name}: {r['jobs']} jobs, {r['requests']} generation requests, {r['sweep_s']:.0f} s", flush=True)
    print_table(rows)
    if args.readme_figures:
        import shutil

        args.readme_figures.mkdir(parents=True, exist_ok=True)
        for name in names:
            for fig in README_FIGURES.get(name, ()):
                shutil.copy(workdir / "multirun" / name / f"{fig}.png", args.readme_figures / f"{name}-{fig}.png")
                print(f"copied {args.readme_figures / f'{name}-{fig}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
