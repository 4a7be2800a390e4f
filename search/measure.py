"""Measure a verifier against the exact oracles: ROC and AUROC, calibration, the rates at an operating threshold,
and the flip-noise setting with the same rates.

    python -m search.measure verifier=prm                      # the tiny PRM on the eval split
    python -m search.measure verifier=judge strategy.budget=16

The pool is the one best-of-k draws (its own ``solve``, with the same config and seeds, so the generation cache
answers a sweep's pools). Every candidate is scored by the verifier under test and labelled by the task: at the *outcome* level the
label is the grader's verdict on the final answer and the score is the verifier's whole-solution score
(``Scores.final``); at the *step* level (process verifiers only) the label of step i is whether steps 1..i all match
the reference (the process oracle) and the score is the verifier's score of step i.

The matched flip noise is the (TPR, FPR) pair at the threshold: an exact oracle wrapped in ``noise=flip`` with those
rates accepts right and wrong candidates as often as the verifier does at that threshold, which places the verifier
on the synthetic-noise axis (``python -m search.verifier_study`` runs both side by side).

Writes, into the run directory: ``verifier_scores.parquet`` (one row per labelled score), ``verifier_quality.json``
(the numbers) and ``roc.png`` / ``calibration.png``.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import hydra
import numpy as np
from omegaconf import DictConfig

from search.contracts import LabError
from search.run import CONF_DIR, build, build_policy, build_verifier, write_json_atomic
from verifiers.oracle import ProcessOracle

LEVELS = ("outcome", "step")
"""Outcome level: one (score, label) per candidate; step level: one per step of a process verifier."""


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (accept when score >= threshold), from the
    strictest (nothing accepted) to the loosest, and the thresholds themselves."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp = np.cumsum(y)[last_of_tie], np.cumsum(~y)[last_of_tie]
    pos, neg = max(1, y.sum()), max(1, (~y).sum())
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos], np.r_[np.inf, s[last_of_tie]]


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve: P(a random positive outscores a random negative), ties counted half; None when
    one class is absent."""
    y = np.asarray(labels, bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def reliability(scores: Sequence[float], labels: Sequence[int], bins: int = 10) -> list[dict]:
    """The reliability diagram: per equal-width score bin, its count, mean score and share of positives."""
    s, y = np.asarray(scores, float), np.asarray(labels, float)
    idx = np.minimum((s * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(m.sum()),
                    "mean_score": float(s[m].mean()) if m.any() else None,
                    "positive_rate": float(y[m].mean()) if m.any() else None})
    return out


def within_auroc(scores: Sequence[float], labels: Sequence[int], groups: Sequence[str]) -> float | None:
    """The mean over groups (problems) with both labels of the AUROC inside the group: how well the verifier ranks
    one problem's candidates, which is all best-of-k uses. A verifier can score well on pooled AUROC by telling easy
    problems from hard ones and still rank a problem's own candidates no better than chance."""
    import pandas as pd

    frame = pd.DataFrame({"s": scores, "y": labels, "g": groups})
    values = [auroc(part.s, part.y) for _, part in frame.groupby("g", sort=False)]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def level_quality(scores: Sequence[float], labels: Sequence[int], threshold: float,
                  groups: Sequence[str] | None = None) -> dict:
    """AUROC (pooled, and within a problem when ``groups`` are given), rates at the threshold, the threshold that
    maximises TPR - FPR (Youden's J) with its rates, expected calibration error (10 bins), Brier score, counts."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    bins = reliability(s, y)
    ece = sum(b["n"] * abs(b["mean_score"] - b["positive_rate"]) for b in bins if b["n"]) / max(1, len(s))
    accept = s >= threshold
    fpr, tpr, cuts = roc_curve(s, y)
    best = int(np.argmax(tpr - fpr))
    return {"n": int(len(s)), "positives": int(y.sum()), "auroc": auroc(s, y),
            "within_problem_auroc": within_auroc(s, y, groups) if groups is not None else None,
            "youden_threshold": float(cuts[best]), "youden_tpr": float(tpr[best]), "youden_fpr": float(fpr[best]),
            "tpr": float(accept[y].mean()) if y.any() else None,
            "fpr": float(accept[~y].mean()) if (~y).any() else None,
            "ece": float(ece), "brier": float(np.mean((s - y) ** 2)) if len(s) else None,
            "reliability": bins}


def measure(cfg: DictConfig) -> tuple["object", dict]:
    """Score the eval pool with ``cfg.verifier`` (with ``cfg.noise``, if any) and label it; returns the rows (a
    DataFrame) and the quality summary."""
    import pandas as pd

    from search.ledger import Ledger, MeteredPolicy, MeteredVerifier

    task = build(cfg, "task")
    strategy = build(cfg, "strategy")
    if getattr(strategy, "name", None) != "best_of_k":
        raise LabError(f"search.measure draws best-of-k's pool; got strategy={strategy.name}: use "
                       f"strategy=best_of_k (strategy.budget sets the samples per problem)")
    verifier, _ = build_verifier(cfg, task)
    policy = build_policy(cfg)
    problems = task.problems("eval", cfg.n_problems)
    steps_known = verifier.kind == "process" and getattr(task, "has_step_checker", True)
    oracle = ProcessOracle(task)          # the step labels: 1 while every step so far is right

    def one(problem):
        ledger = Ledger(policy_params=policy.n_params, verifier_params=verifier.n_params)
        chosen = strategy.solve(problem, MeteredPolicy(policy, task, ledger), MeteredVerifier(verifier, ledger))
        pool, scores = chosen.candidates, chosen.scores
        labels = oracle.score(problem, pool).steps if steps_known else ()
        base = {"problem_id": problem.id, "difficulty": problem.metadata.get(getattr(task, "difficulty_key", ""))}
        rows = []
        for i, (cand, steps) in enumerate(zip(pool, scores.steps)):
            rows.append({**base, "candidate": i, "level": "outcome", "step": len(steps) - 1,
                         "score": scores.final[i], "label": int(task.grade(problem, cand.answer))})
            if steps_known and cand.steps:
                rows += [{**base, "candidate": i, "level": "step", "step": j, "score": s, "label": int(right)}
                         for j, (s, right) in enumerate(zip(steps, labels[i]))]
        return rows, ledger.verifier_tokens

    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        results = list(pool.map(one, problems))
    table = pd.DataFrame([r for rows, _ in results for r in rows])
    quality = {"verifier": getattr(verifier, "name", type(verifier).__name__), "verifier_kind": verifier.kind,
               "verifier_params": verifier.n_params, "policy_model_id": policy.model_id,
               "n_problems": len(problems), "samples": strategy.budget, "threshold": float(cfg.measure.threshold),
               "verifier_tokens_per_candidate": sum(t for _, t in results) / max(1, len(problems) * strategy.budget)}
    return table, summarize(table, quality)


def summarize(table, quality: dict) -> dict:
    """Fill ``quality`` (which holds the run's facts and ``threshold``) with the per-level numbers of ``table`` and
    the matched flip rates; returns it."""
    quality["levels"] = {}
    for level in LEVELS:
        part = table[table.level == level] if len(table) else table
        if len(part):
            # step level: a problem's steps are ranked together, as a step-wise search compares them
            quality["levels"][level] = level_quality(part.score, part.label, quality["threshold"], part.problem_id)
    quality["matched_flip"] = {level: {"tpr": q["tpr"], "fpr": q["fpr"]} for level, q in quality["levels"].items()}
    return quality


def sentence(quality: dict) -> str:
    """One sentence that places the verifier on the flip-noise axis."""
    parts = []
    for level in ("outcome", "step"):
        q = quality["levels"].get(level)
        if q and q["tpr"] is not None and q["fpr"] is not None:
            within = q.get("within_problem_auroc")
            parts.append(f"at the {level} level like an exact oracle with TPR {q['tpr']:.2f} and FPR {q['fpr']:.2f} "
                         f"(AUROC {q['auroc']:.3f}" + (f"; within a problem {within:.3f})" if within else ")"))
    return (f"At threshold {quality['threshold']:g}, {quality['verifier']} behaves " + "; ".join(parts) + ".")


def write(out_dir: Path, table, quality: dict) -> None:
    """The rows, the numbers and the two figures, into ``out_dir``."""
    from plots.verifier_quality import calibration_figure, roc_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_dir / "verifier_scores.parquet", index=False)
    write_json_atomic(out_dir / "verifier_quality.json", quality)
    roc_figure(table, quality, out_dir / "roc")
    calibration_figure(table, quality, out_dir / "calibration")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="measure")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        table, quality = measure(cfg)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    write(out_dir, table, quality)
    for level, q in quality["levels"].items():
        print(f"{level:8s} n={q['n']:6d}  positives={q['positives']:6d}  AUROC={q['auroc'] if q['auroc'] is None else round(q['auroc'], 3)}  "
              f"TPR={q['tpr']:.3f}  FPR={q['fpr']:.3f}  ECE={q['ece']:.3f}  Brier={q['brier']:.3f}")
    print(sentence(quality))
    print(f"wrote {out_dir}/verifier_quality.json, verifier_scores.parquet, roc.png, calibration.png")


def main() -> None:
    from search.cli_checks import check_overrides

    check_overrides(sys.argv[1:], CONF_DIR, config_name="measure")
    hydra_main()


if __name__ == "__main__":
    main()
