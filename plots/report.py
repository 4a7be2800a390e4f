"""One page per sweep: its figures, what each shows in one sentence, its config, the closed-form check, and its
table at the report budgets; written as report.md (renders on GitHub) and report.html (opens in any browser).

    python -m search.report multirun/noise_flip     # (lab report) collects the table if stale, then this page
    python -m plots.report multirun/noise_flip      # this page alone, from an up-to-date results.parquet

Reads only the collected table (results.parquet) and, for a verifier study, its measurement files; figures are drawn
into the sweep directory beside it.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

import pandas as pd

from plots.coverage_fit import coverage_tail_check
from plots.noise_curves import FIXED_BUDGETS
from plots.reward_curves import optimal_k
from plots.sweep_curves import plot_table
from plots.table import NOISE_AXES, fmt

CONFIG_COLUMNS = ("task", "policy", "strategy", "verifier", "noise", *NOISE_AXES[1:], "fp_cost", "budget",
                  "n_problems", "seed", "pool_seed", "noise_seed")
"""Config columns shown in the report: as one value when fixed, as the list of values when swept."""
NOISE_DEPENDENT = ("argmax", "weighted", "accept")
"""Rules whose result depends on the verifier (coverage and majority vote do not, so they are shown once)."""


def job_labels(table: pd.DataFrame) -> dict[str, str]:
    """Each job's name in the report: the command-line overrides that not every job shares (else its directory)."""
    per_job = table.drop_duplicates("job").set_index("job")["overrides"].fillna("")
    tokens = {job: text.split() for job, text in per_job.items()}
    shared = set.intersection(*(set(t) for t in tokens.values())) if tokens else set()
    return {job: " ".join(t for t in toks if t not in shared) or job for job, toks in tokens.items()}


def closed_form_check(table: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """Per job and rule with a closed form: the largest gap between the measured curve and the closed form given
    each pool, the joint p-value of the paired test over problems (mean difference zero at every k), the budget
    where the difference is most significant, and whether the measured curve also lies inside its simultaneous
    band (the old, weak check)."""
    rows = table[table["closed_form"].notna()]
    names = job_labels(table)
    out = []
    for (job, rule), part in rows.groupby(["job", "selection"], sort=False):
        entry = {"job": names[job], "rule": rule,
                 "max |measured - closed form|": (part["accuracy"] - part["closed_form"]).abs().max()}
        if "closed_form_p_joint" in part and part["closed_form_p_joint"].notna().any():
            p_joint = float(part["closed_form_p_joint"].iloc[0])
            worst = part.loc[part["closed_form_p"].idxmin()]
            entry.update({"paired test joint p": p_joint, "smallest per-k p": float(worst["closed_form_p"]),
                          "at k": int(worst["k"]), "agrees": "yes" if p_joint >= level else "no"})
        if part["band_lo"].notna().all():
            inside = (part["closed_form"] >= part["band_lo"] - 1e-12) & (part["closed_form"] <= part["band_hi"] + 1e-12)
            entry["inside band at every k"] = "yes" if inside.all() else "no"
        out.append(entry)
    return pd.DataFrame(out)


def results_at_budgets(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy [95% interval] at the fixed budgets: coverage and majority once per pool (they do not depend on
    the verifier), the verifier-dependent rules once per job."""
    ks = [k for k in FIXED_BUDGETS if k in set(table["k"])] or sorted(table["k"].unique())
    rows = table[table["k"].isin(ks)]
    names = job_labels(table)
    pool_keys = [c for c in ("pool_seed", "budget") if c in rows and rows[c].nunique() > 1]
    first_job_per_pool = rows.drop_duplicates(pool_keys or ["task"])["job"]
    keep = rows[rows["selection"].isin(NOISE_DEPENDENT) | rows["job"].isin(first_job_per_pool)]

    def where(r) -> str:
        if r["selection"] in NOISE_DEPENDENT:
            return names[r["job"]]
        return ", ".join(f"{c}={fmt(r[c])}" for c in pool_keys) or "every job (same pools)"

    cells = keep.assign(cell=[f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                              zip(keep["accuracy"], keep["accuracy_lo"], keep["accuracy_hi"])],
                        where=keep.apply(where, axis=1))
    wide = cells.pivot_table(index=["selection", "where"], columns="k", values="cell", aggfunc="first", sort=False)
    wide.columns = [f"k={k}" for k in wide.columns]
    return wide.reset_index().rename(columns={"selection": "rule", "where": "job"})


def build_blocks(table: pd.DataFrame, figures, sweep_dir: Path) -> list[tuple]:
    """The page as blocks: ("h1"|"h2"|"p", text), ("table", DataFrame), ("figure", Figure)."""
    jobs = table["job"].nunique()
    blocks: list[tuple] = [
        ("h1", f"Sweep report: {sweep_dir.name}"),
        ("p", f"{jobs} jobs in {sweep_dir}, written {time.strftime('%Y-%m-%d %H:%M %Z')} by "
              f"`python -m plots.report {sweep_dir}`. The full table (one row per job, selection rule and budget) "
              f"is results.csv / results.parquet beside this page."),
        ("h2", "Configuration"),
    ]
    config = []
    for col in (*CONFIG_COLUMNS, *(c for c in table.columns if "." in c)):     # and every swept config field
        if col not in table or table[col].isna().all():
            continue
        values = list(dict.fromkeys(table[col].dropna()))
        config.append({"field": col, "value": ", ".join(fmt(v) for v in values),
                       "swept": "yes" if len(values) > 1 else ""})
    blocks.append(("table", pd.DataFrame(config)))
    per_job = table.drop_duplicates("job")
    compute = {"generation requests sent to the policy": per_job["generation_requests"].sum(),
               "prompts answered from the generation cache": per_job["cache_hits"].sum(),
               "tokens generated": per_job["generated_tokens"].sum(),
               "sum of job wall times (s)": round(per_job["job_wall_s"].sum(), 1)}
    blocks.append(("p", "What the sweep spent: " + "; ".join(f"{k}: {fmt(v)}" for k, v in compute.items()) + "."))
    blocks.append(("h2", "Figures"))
    blocks += [("figure", f) for f in figures]

    check = closed_form_check(table)
    if not check.empty:
        agree = (check["agrees"] == "yes").sum() if "agrees" in check else 0
        blocks += [("h2", "Measured curves against the closed forms"),
                   ("p", f"{agree} of {len(check)} measured curves agree with their closed form at the 5% level. The "
                         f"closed form is the exact expectation over the noise given each problem's pool (the share "
                         f"of its samples the exact base verifier accepts); the test is paired over problems (the "
                         f"per-problem differences have mean zero at every budget, jointly: max |t| over k, "
                         f"calibrated by sign flips). With 20 curves, one disagreement at 5% is expected by chance."),
                   ("table", check)]
    if table["fp_cost"].nunique() > 1:
        blocks += [("h2", "Optimal number of samples per false-positive cost"),
                   ("p", "The budget with the highest mean reward (+1 right, -fp_cost accepted wrong, 0 abstain), "
                         "measured and from the closed form."),
                   ("table", optimal_k(table))]
    tail = coverage_tail_check(table)
    if tail is not None:
        fit, rows = tail
        blocks += [("h2", "Coverage extrapolation"),
                   ("p", f"log(coverage) = {fit.a:.4f} k^{fit.b:.4f}, fitted on k in {list(fit.fit_ks)}; "
                         f"predictions for larger k against the measurement and its 95% interval "
                         f"(envelope over pools):"),
                   ("table", rows.rename(columns={"accuracy": "measured", "lo": "measured_lo", "hi": "measured_hi"}))]
    blocks += [("h2", "Accuracy at fixed budgets"), ("table", results_at_budgets(table))]
    return blocks


def verifier_blocks(table: pd.DataFrame, quality: dict, sweep_dir: Path) -> list[tuple]:
    """The page of a verifier study: the verifier measured against the exact oracle (ROC, calibration, rates),
    its place on the flip-noise axis, and its search curves beside the oracle's and the matched noise's."""
    from plots.verifier_quality import arms_figure, calibration_figure, roc_figure
    from search.analysis.verifier_metrics import sentence

    scores = pd.read_parquet(sweep_dir / "quality" / "verifier_scores.parquet")
    levels = pd.DataFrame([{"level": lvl, **{k: q.get(k) for k in ("n", "positives", "auroc", "within_problem_auroc", "tpr", "fpr",
                                                                  "youden_threshold", "youden_tpr", "youden_fpr",
                                                                  "ece", "brier")}}
                           for lvl, q in quality["levels"].items()])
    blocks: list[tuple] = [
        ("h1", f"Verifier study: {quality['verifier']}"),
        ("p", f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by `python -m search.report {sweep_dir}` from the jobs "
              f"of `python -m search.verifier_study`. Measured on {quality['n_problems']} evaluation problems x "
              f"{quality['samples']} samples of {quality['policy_model_id']}."),
        ("h2", "The verifier against the exact oracle"),
        ("p", sentence(quality)),
        ("table", levels),
        ("figure", roc_figure(scores, quality, sweep_dir / "verifier_roc")),
        ("figure", calibration_figure(scores, quality, sweep_dir / "verifier_calibration")),
        ("h2", "Search with it, beside the oracle and the matched noise"),
        ("figure", arms_figure(table, quality, sweep_dir)),
    ]
    arms = table.assign(arm=table["job"].str.split("/").str[1], family=table["job"].str.split("/").str[0])
    own = arms[(arms["family"] != "best_of_k") | (arms["selection"] == "argmax")]
    pivot = own.pivot_table(index=["family", "k"], columns="arm", values="accuracy").reset_index()
    blocks += [("p", "Accuracy per arm (best-of-k: argmax of the verifier at each k from one pool; the step-wise "
                     "search: one job per budget)."), ("table", pivot)]
    check = closed_form_check(table)
    if not check.empty:
        blocks += [("p", "The matched arms of best-of-k against their closed forms:"), ("table", check)]
    return blocks


def render_markdown(blocks) -> str:
    out = []
    for kind, value in blocks:
        if kind == "h1":
            out.append(f"# {value}\n")
        elif kind == "h2":
            out.append(f"## {value}\n")
        elif kind == "p":
            out.append(f"{value}\n")
        elif kind == "table":
            out.append(value.to_markdown(index=False, floatfmt=".4g") + "\n")
        elif kind == "figure":
            out.append(f"### {value.name}\n\n![{value.name}]({value.paths[0].name})\n\n{value.meaning}\n")
    return "\n".join(out)


def render_html(blocks, title: str) -> str:
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(value)}</p>")
        elif kind == "table":
            body.append(value.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
        elif kind == "figure":
            body.append(f"<h3>{html.escape(value.name)}</h3><img src='{value.paths[0].name}' "
                        f"alt='{html.escape(value.name)}'><p>{html.escape(value.meaning)}</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:0.85em}td,th{padding:2px 8px;border-bottom:1px solid #ddd}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def table_is_stale(sweep_dir: Path) -> bool:
    """Whether ``results.parquet`` is missing or older than one of the sweep's job summaries."""
    table_path = Path(sweep_dir) / "results.parquet"
    summaries = list(Path(sweep_dir).rglob("summary.json"))
    return not table_path.exists() or bool(summaries) and max(p.stat().st_mtime for p in summaries) > \
        table_path.stat().st_mtime


def write_report(sweep_dir: Path) -> list[Path]:
    """Draw the figures and write the two pages from the sweep's collected table (collect it first:
    ``search.analysis.tables.write_tables``, which ``python -m search.report`` does when it is stale)."""
    sweep_dir = Path(sweep_dir)
    table_path = sweep_dir / "results.parquet"
    table = pd.read_parquet(table_path)
    quality_path = sweep_dir / "quality" / "verifier_quality.json"
    if quality_path.exists():           # a verifier study (python -m search.verifier_study)
        blocks = verifier_blocks(table, json.loads(quality_path.read_text()), sweep_dir)
    else:
        blocks = build_blocks(table, plot_table(table_path, sweep_dir), sweep_dir)
    md, page = sweep_dir / "report.md", sweep_dir / "report.html"
    md.write_text(render_markdown(blocks))
    page.write_text(render_html(blocks, f"Sweep report: {sweep_dir.name}"))
    return [md, page]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a sweep directory (multirun/NAME) holding finished jobs")
    args = ap.parse_args(argv)
    if table_is_stale(args.sweep_dir):
        print(f"error: {args.sweep_dir} has no up-to-date results.parquet: run python -m search.report "
              f"{args.sweep_dir} (it collects the table first)", file=sys.stderr)
        return 2
    for path in write_report(args.sweep_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
