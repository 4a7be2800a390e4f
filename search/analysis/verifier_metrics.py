"""How well a verifier's scores separate right from wrong: ROC, AUROC (pooled and within a problem), calibration,
the rates at a threshold, and the matched noise that places a verifier on the synthetic-noise axis: flip rates that
reproduce its accept rule, and Gaussian score noise that reproduces its ranking inside a problem (argmax).

Pure functions of (score, label) tables; ``search.engine.measuring`` produces the table from a pool and
``plots.verifier_quality`` draws it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

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
    maximises TPR - FPR (Youden's J) with its rates (None without both classes, or when the best is to accept
    nothing), expected calibration error (10 bins), Brier score, counts."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    bins = reliability(s, y)
    ece = sum(b["n"] * abs(b["mean_score"] - b["positive_rate"]) for b in bins if b["n"]) / max(1, len(s))
    accept = s >= threshold
    fpr, tpr, cuts = roc_curve(s, y)
    best = int(np.argmax(tpr - fpr))
    # Youden's J needs both classes; its best cut may also be "accept nothing" (+inf), which JSON cannot hold
    youden = y.any() and (~y).any() and bool(np.isfinite(cuts[best]))
    return {"n": int(len(s)), "positives": int(y.sum()), "auroc": auroc(s, y),
            "within_problem_auroc": within_auroc(s, y, groups) if groups is not None else None,
            "youden_threshold": float(cuts[best]) if youden else None,
            "youden_tpr": float(tpr[best]) if youden else None, "youden_fpr": float(fpr[best]) if youden else None,
            "tpr": float(accept[y].mean()) if y.any() else None,
            "fpr": float(accept[~y].mean()) if (~y).any() else None,
            "ece": float(ece), "brier": float(np.mean((s - y) ** 2)) if len(s) else None,
            "reliability": bins}


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
    quality["matched_scores"] = {}
    for level in quality["levels"]:
        part = table[table.level == level]
        fit = matched_scores(part.score, part.label, part.problem_id)
        if fit is not None:
            quality["matched_scores"][level] = fit
    return quality


LOGIT_CLIP = 1e-6
"""Scores are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before the logit, so an exact 0 or 1 stays finite."""


def matched_scores(scores: Sequence[float], labels: Sequence[int], groups: Sequence[str]) -> dict | None:
    """The Gaussian score noise (``verifiers.noise.ScoreNoise``: right ~ N(mu_right, sigma_right^2), wrong ~
    N(0, sigma_wrong^2) on the logit scale, eps 0) whose ranking *inside a problem* matches the verifier's, which is
    what argmax uses (the matched flip rates reproduce only the accept rule).

    Each problem's logits are measured from the mean logit of its wrong candidates, which removes the problem's own
    offset (a verifier that scores easy problems higher everywhere does not help argmax). Over problems with both
    labels: sigma_wrong^2 is the pooled within-problem variance of wrong logits (divided by n_w - 1 per problem);
    mu_right is the mean of the right residuals, and sigma_right^2 their variance less the variance that the
    reference mean adds (sigma_wrong^2 / n_w), floored at 1e-6. None when no problem has both labels."""
    import pandas as pd

    s = np.clip(np.asarray(scores, dtype=float), LOGIT_CLIP, 1 - LOGIT_CLIP)
    frame = pd.DataFrame({"x": np.log(s / (1 - s)), "y": np.asarray(labels, bool), "g": list(groups)})
    right_res, extra_var, wrong_ss, wrong_df = [], [], 0.0, 0
    for _, part in frame.groupby("g", sort=False):
        wrong, right = part.x[~part.y].to_numpy(), part.x[part.y].to_numpy()
        if len(wrong) < 2 or len(right) == 0:
            continue
        ref = wrong.mean()
        wrong_ss += float(((wrong - ref) ** 2).sum())
        wrong_df += len(wrong) - 1
        right_res += list(right - ref)
        extra_var += [1.0 / len(wrong)] * len(right)
    if not right_res or wrong_df == 0:
        return None
    sigma_wrong2 = wrong_ss / wrong_df
    res = np.asarray(right_res)
    sigma_right2 = max(1e-6, float(res.var(ddof=1) if len(res) > 1 else 0.0) - sigma_wrong2 * float(np.mean(extra_var)))
    return {"mu_right": float(res.mean()), "mu_wrong": 0.0, "sigma_right": float(np.sqrt(sigma_right2)),
            "sigma_wrong": float(np.sqrt(sigma_wrong2)), "eps": 0.0}


def sentence(quality: dict) -> str:
    """One sentence that places the verifier on the flip-noise axis."""
    parts = []
    for level in ("outcome", "step"):
        q = quality["levels"].get(level)
        if q and q["tpr"] is not None and q["fpr"] is not None:
            within = q.get("within_problem_auroc")
            parts.append(f"at the {level} level like an exact oracle with TPR {q['tpr']:.2f} and FPR {q['fpr']:.2f} "
                         f"(AUROC {q['auroc']:.3f}" + (f"; within a problem {within:.3f})" if within else ")"))
    if not parts:
        return (f"{quality['verifier']} cannot be placed on the noise axis: every level lacks right or wrong "
                f"candidates, so its TPR or FPR is undefined (a larger or easier pool has both).")
    text = f"At threshold {quality['threshold']:g}, {quality['verifier']} behaves " + "; ".join(parts) + "."
    fits = quality.get("matched_scores", {})
    if fits:
        text += " Its ranking inside a problem matches Gaussian logit scores with " + "; ".join(
            f"at the {level} level right N({f['mu_right']:.2f}, {f['sigma_right']:.2f}^2) and wrong "
            f"N(0, {f['sigma_wrong']:.2f}^2)" for level, f in fits.items()) + "."
    return text
