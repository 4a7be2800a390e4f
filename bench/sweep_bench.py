"""Benchmark the standard sweep: what the generation cache saves, and where the wall time goes.

    .venv/bin/python bench/sweep_bench.py                      # all standard presets, fresh work dir, cold cache
    .venv/bin/python bench/sweep_bench.py --sweeps noise_flip,fp_cost --set n_problems=50
    .venv/bin/python bench/sweep_bench.py --readme-figures plots/figures     # regenerate the README's figures
    .venv/bin/python bench/sweep_bench.py --sweeps noise_flip,fp_cost --old-rev 7e460b4 --cache CACHE.sqlite

Runs each preset exactly as a user does (``python -m search.run -m +sweep=NAME``, then ``python -m search.report``)
in one fresh working directory, so the first preset starts from an empty generation cache and later presets reuse
its pools. Prints, per preset and in total, the generation requests and generated tokens the sweep needed against
what regenerating every cell (every job drawing its own pools) would need, and the wall time of each phase:
process start and config, server start, solving (generation, scoring, per-k evaluation), summarising (bootstrap),
and the report (collect, figures, page). All numbers come from this run's summaries and clocks.

With ``--old-rev REV`` each preset runs twice, side by side: first with the lab as it was at commit REV (its
packages exported from git and put first on PYTHONPATH) in WORKDIR/before, then with this tree in WORKDIR/after,
both on one generation cache (``--cache FILE`` copies a warm one in, so neither side generates). It prints the time
per job of each side and the ratio, and where the time of a job goes, so a ratio below a target shows what bounds
it; ``bench/compare_tables.py WORKDIR/before WORKDIR/after`` then says whether the tables are equal.
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


def run_preset(name: str, workdir: Path, extra: list[str], env: dict | None = None) -> dict:
    """Run one preset and its report (with ``env`` for both processes when given); the measurements of both."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "search.run", "-m", f"+sweep={name}", *extra]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    sweep_s = time.time() - t0
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {done.returncode}): " + " | ".join(tail))
    t1 = time.time()
    report = subprocess.run([sys.executable, "-m", "search.report", f"multirun/{name}"], cwd=workdir,
                            capture_output=True, text=True, env=env)
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


TARGET_PER_JOB = 10.0
"""Issue 19's target for a re-scoring sweep (one that sends no generation request): its time per job at least this
many times shorter than at commit 7e460b4, with identical tables."""
PER_JOB = ("sweep_s", "solve_s", "summarize_s", "process_s")
"""The columns of the side-by-side table, per job: the whole sweep's wall time, and its parts that scale with jobs
(solve holds the per-k evaluation; process is Hydra's per-job work and each job's figure, outside the job's clock)."""


def print_side_by_side(before: list[dict], after: list[dict], rev: str) -> None:
    print(f"\nper job (s): {rev} (old) against this tree (new), run one after the other on one generation cache")
    print(f"{'sweep':<20}{'jobs':>5}" + "".join(f"{c[:-2] + ' old':>15}{c[:-2] + ' new':>15}{'ratio':>7}"
                                               for c in PER_JOB))
    for b, a in zip(before, after):
        cells = "".join(f"{b[c] / b['jobs']:>15.3f}{a[c] / a['jobs']:>15.3f}{b[c] / max(a[c], 1e-9):>7.1f}"
                        for c in PER_JOB)
        ratio = b["sweep_s"] / max(a["sweep_s"], 1e-9)
        mark = f"  target >={TARGET_PER_JOB:g}x per job: {'ok' if ratio >= TARGET_PER_JOB else 'MISS'}"
        print(f"{b['sweep']:<20}{b['jobs']:>5}{cells}{mark if b['requests'] == 0 else ''}")
    print("sweep: wall time of the whole sweep over its jobs; solve: the jobs' solve phase (cache reads, scoring, "
          "closed forms, per-k evaluation); summarize: bootstrap intervals and agreement tests; process: Hydra's "
          "per-job work, each job's figure, imports")


def export_rev(rev: str, dest: Path) -> None:
    """The lab's files at commit ``rev`` in ``dest`` (git archive), to run the old code beside this tree."""
    root = Path(__file__).resolve().parent.parent
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # compiled now, so the old side's first job does not pay for byte-compiling a fresh tree
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest)], check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweeps", default=",".join(STANDARD), help="comma-separated presets from conf/sweep/")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="working directory (default: a fresh temporary one, so the cache starts cold)")
    ap.add_argument("--readme-figures", type=Path, default=None,
                    help="copy the README's figures of these sweeps into this directory (plots/figures)")
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="an override added to every sweep, e.g. --set n_problems=50 (repeatable)")
    ap.add_argument("--old-rev", default=None,
                    help="also run every preset with the lab at this commit, side by side (WORKDIR/before, /after)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="a generation cache (SQLite file) to copy in first, so the sweeps start warm")
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
    import os
    import shutil

    sides = {"": None}
    if args.old_rev:
        export_rev(args.old_rev, workdir / "old_src")
        old_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(workdir / "old_src"),
                                                                             os.environ.get("PYTHONPATH")])))
        sides = {"before": old_env, "after": None}
        for side in sides:
            (workdir / side).mkdir(exist_ok=True)
        if not (workdir / "after" / ".lab_cache").exists():     # one cache for both sides
            (workdir / "before" / ".lab_cache").mkdir(exist_ok=True)
            (workdir / "after" / ".lab_cache").symlink_to(workdir / "before" / ".lab_cache")
    if args.cache:
        first = workdir / next(iter(sides)) / ".lab_cache"
        first.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.cache, first / "generations.sqlite")
    rows = {side: [] for side in sides}
    for name in names:
        for side, env in sides.items():
            rows[side].append(run_preset(name, workdir / side, args.extra, env))
            r = rows[side][-1]
            print(f"{name}{' (' + side + ')' if side else ''}: {r['jobs']} jobs, {r['requests']} generation "
                  f"requests, {r['sweep_s']:.0f} s", flush=True)
    for side in sides:
        if side:
            print(f"\n== {side}: {args.old_rev if side == 'before' else 'this tree'}")
        print_table(rows[side])
    if args.old_rev:
        print_side_by_side(rows["before"], rows["after"], args.old_rev)
        compare = [sys.executable, str(Path(__file__).resolve().parent / "compare_tables.py"),
                   str(workdir / "before"), str(workdir / "after")]
        print(f"\ntables, old against new ({' '.join(compare[1:])}):", flush=True)
        subprocess.run(compare, check=False)
    if args.readme_figures:
        args.readme_figures.mkdir(parents=True, exist_ok=True)
        last = workdir / ("after" if args.old_rev else "")
        for name in names:
            for fig in README_FIGURES.get(name, ()):
                shutil.copy(last / "multirun" / name / f"{fig}.png", args.readme_figures / f"{name}-{fig}.png")
                print(f"copied {args.readme_figures / f'{name}-{fig}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
