"""Place a verifier on the noise axis and compare it there: measure it, then run best-of-k and a step-wise search
with it, with the exact oracle, and with the flip noise of the same error rates; one table, one report.

    python -m search.verifier_study verifier=prm                          # the tiny PRM (about 10 minutes)
    python -m search.verifier_study verifier=judge --search none          # an outcome verifier: best-of-k only
    python -m search.verifier_study verifier=prm n_problems=100 --budgets 4 8 16 --out multirun/prm_small

Every job runs in this one process (``search.engine.runner.run`` on a composed config), so the policy and reward-model
servers load once; a rerun resumes (finished jobs are skipped, unfinished ones continue where they stopped). The
directory ends up with:

    quality/              search.measure's output: verifier_quality.json, verifier_scores.parquet, roc/calibration
    best_of_k/{oracle,verifier,matched,matched_scores}/   one pool per arm, every k <= the largest budget
    <search>/{oracle,verifier,matched,matched_scores}/b<budget>/   one job per budget
    results.parquet, report.md, report.html           search.analysis.tables and plots.report

The *matched* arm wraps the exact oracle (outcome oracle for best-of-k, process oracle for the step-wise search) in
``noise=flip`` with the verifier's measured TPR and FPR at the threshold, at the level that search uses; the
*matched_scores* arm in ``noise=gaussian`` with the means and spreads of the verifier's logit scores of right and
wrong candidates inside a problem (``search.analysis.verifier_metrics.matched_scores``), which reproduces argmax.
Arguments that are not this command's own options are Hydra overrides; the ones about the verifier (``verifier``,
``verifier.*``, ``+verifier.*``, ``noise``, ``noise.*``, ``hydra.searchpath``) go to the measured arm only, all others
to every job.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search.build import CONF_DIR, compose
from search.cli import check_overrides, exit_on_lab_error, fail
from search.contracts import LabError

ARMS = ("oracle", "verifier", "matched", "matched_scores")
"""The arms of the comparison: the exact oracle, the verifier, the exact oracle under flip noise of the verifier's
rates at the threshold (reproduces its accept rule), and under Gaussian score noise fitted to its within-problem
score distributions (reproduces its argmax)."""
_VERIFIER_KEYS = ("verifier", "+verifier", "noise", "+noise")


def _is_verifier_override(o: str) -> bool:
    key = o.split("=", 1)[0]
    return key.split(".", 1)[0] in _VERIFIER_KEYS


def jobs(common: list[str], verifier: list[str], quality: dict, budgets: list[int], search: str | None) -> dict:
    """Job directory -> overrides, for every arm of best-of-k and of the step-wise search."""
    top = max(budgets)
    ks = "[" + ",".join(str(k) for k in sorted(set([1, 2, 4, 8, 16, 32, 64, 128, top]))
                          if k <= top) + "]"
    rates = quality["matched_flip"]
    out = {}
    bok = [*common, "strategy=best_of_k", f"strategy.budget={top}", f"budgets={ks}"]
    out["best_of_k/oracle"] = [*bok, "verifier=outcome_oracle", "noise=none"]
    out["best_of_k/verifier"] = [*bok, *verifier]
    o = rates["outcome"]
    # rates of an empty class are undefined (a pool with no right candidate has no TPR): no matched arm then
    if o["tpr"] is not None and o["fpr"] is not None:
        out["best_of_k/matched"] = [*bok, "verifier=outcome_oracle", "noise=flip", f"noise.tpr={o['tpr']:.4f}",
                                    f"noise.fpr={o['fpr']:.4f}"]
    scores = quality.get("matched_scores", {})
    if "outcome" in scores:
        out["best_of_k/matched_scores"] = [*bok, "verifier=outcome_oracle", *score_noise(scores["outcome"])]
    if search and "step" in rates:
        s = rates["step"]
        for b in budgets:
            base = [*common, f"strategy={search}", f"strategy.budget={b}"]
            out[f"{search}/oracle/b{b}"] = [*base, "verifier=process_oracle", "noise=none"]
            out[f"{search}/verifier/b{b}"] = [*base, *verifier]
            out[f"{search}/matched/b{b}"] = [*base, "verifier=process_oracle", "noise=flip",
                                             f"noise.tpr={s['tpr']:.4f}", f"noise.fpr={s['fpr']:.4f}"]
            if "step" in scores:
                out[f"{search}/matched_scores/b{b}"] = [*base, "verifier=process_oracle",
                                                        *score_noise(scores["step"])]
    return out


def score_noise(fit: dict) -> list[str]:
    """The overrides of the Gaussian score noise fitted to a verifier's within-problem scores."""
    return ["noise=gaussian", *(f"noise.{k}={fit[k]:.4f}" for k in ("mu_right", "mu_wrong", "sigma_right",
                                                                     "sigma_wrong", "eps"))]


def study(overrides: list[str], out: Path, budgets: list[int], search: str | None) -> Path:
    """Measure, run every arm, collect, report; returns the path of report.md (report.html is beside it)."""
    from plots.verifier_quality import quality_figures
    from search.analysis.tables import write_tables
    from search.analysis.verifier_metrics import sentence
    from search.engine.measuring import measure, write
    from search.engine.runner import run

    searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
    rest = [o for o in overrides if o not in searchpath]
    verifier = [o for o in rest if _is_verifier_override(o)]
    common = [o for o in rest if not _is_verifier_override(o)]
    if not any(o.split("=", 1)[0] == "verifier" for o in verifier):
        raise LabError("name the verifier to study, e.g. python -m search.verifier_study verifier=prm")

    qdir = out / "quality"
    if (qdir / "verifier_quality.json").exists():
        quality = json.loads((qdir / "verifier_quality.json").read_text())
    else:
        cfg = compose([*common, *verifier, "strategy=best_of_k", f"strategy.budget={max(budgets)}"], "measure",
                      searchpath)
        table, quality = measure(cfg)
        write(qdir, table, quality)
        quality_figures(table, quality, qdir)
    print(sentence(quality), flush=True)
    if search and "step" not in quality["levels"]:
        print(f"no step-level measurement ({quality['verifier']} is an outcome verifier, or the task has no exact "
              f"step checker): no step-wise arm")
        search = None

    for name, job in jobs(common, verifier, quality, budgets, search).items():
        job_dir = out / name
        if (job_dir / "summary.json").exists():
            continue
        print(f"== {name}: {' '.join(job)}", flush=True)
        run(compose(job, searchpath=searchpath), job_dir, tuple(job))
    write_tables(out, out)
    from plots.report import write_report

    return write_report(out)[0]


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m search.verifier_study", description=__doc__.split("\n\n")[0],
                                 epilog="other arguments are Hydra overrides, e.g. verifier=prm n_problems=100")
    ap.add_argument("--out", type=Path, default=None, help="study directory (default: multirun/study_<verifier>)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16, 32],
                    help="budgets of the step-wise search; best-of-k's pool is the largest")
    ap.add_argument("--search", default="beam_search",
                    help="step-wise strategy of the comparison (a conf/strategy name), or 'none'")
    args, overrides = ap.parse_known_args(argv)
    check_overrides(overrides, CONF_DIR)
    options = sorted(p.stem for p in (Path(CONF_DIR) / "strategy").glob("*.yaml") if p.stem != "best_of_k")
    if args.search not in (*options, "none"):
        fail(f"--search {args.search}: choose one of {', '.join(options)}, or none")
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("verifier=")), "verifier")
    out = args.out or Path("multirun") / f"study_{name}"
    with exit_on_lab_error():
        report = study(overrides, out, sorted(args.budgets), None if args.search == "none" else args.search)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
