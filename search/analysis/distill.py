"""Distillation at equal test-time compute: a teacher with search against a smaller student with more samples.

A policy's test-time cost of best-of-k is its FLOPs per problem at k (``frontier.flops_at_k``: 2 x parameters x
(prompt + k x completion tokens)). A student of fewer parameters draws more samples for the same FLOPs: for every
teacher budget k, the student's matched budget is the largest k' whose cost does not exceed the teacher's at k (never
more compute than the teacher; the student's pool caps k'). The comparison is paired over the same evaluation
problems: the per-problem difference of the two (problems x k) accuracy matrices at (k', k), with a bootstrap
interval.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from search.analysis.estimators import bootstrap_ci


def matched_k(teacher_flops: Sequence[float], student_flops: Sequence[float]) -> list[int | None]:
    """For each teacher budget k = 1..len(teacher_flops), the largest student budget k' (1-based, at most
    len(student_flops)) whose FLOPs do not exceed the teacher's at k; None when even k' = 1 costs more."""
    student = np.asarray(student_flops, float)
    out: list[int | None] = []
    for cost in np.asarray(teacher_flops, float):
        fits = np.flatnonzero(student <= cost * (1 + 1e-12))
        out.append(int(fits[-1]) + 1 if fits.size else None)
    return out


def equal_compute(teacher: np.ndarray, student: np.ndarray, teacher_flops: Sequence[float],
                  student_flops: Sequence[float], ks: Sequence[int], resamples: int = 1000,
                  seed: int = 0) -> list[dict]:
    """One row per teacher budget in ``ks``: the teacher's accuracy at k and the student's at its matched k' (means
    over problems of the (problems x k) matrices, same problem order), their FLOPs, and the paired difference
    (student - teacher) with its 95% bootstrap interval. ``student_capped``: the student's whole pool costs less
    than the teacher at k, so k' is its largest budget (the comparison gives the student less compute)."""
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(f"teacher and student matrices have {teacher.shape[0]} and {student.shape[0]} problems: "
                         f"they must be measured on the same problems")
    match = matched_k(teacher_flops, student_flops)
    rows = []
    for k in ks:
        kk = match[k - 1]
        if kk is None:
            continue
        diff = student[:, kk - 1] - teacher[:, k - 1]
        lo, hi = bootstrap_ci(diff, resamples, seed=seed)
        rows.append({"k_teacher": int(k), "k_student": int(kk), "teacher_flops": float(teacher_flops[k - 1]),
                     "student_flops": float(student_flops[kk - 1]),
                     "teacher_accuracy": float(teacher[:, k - 1].mean()),
                     "student_accuracy": float(student[:, kk - 1].mean()), "student_minus_teacher": float(diff.mean()),
                     "ci_low": lo, "ci_high": hi,
                     "student_capped": bool(kk == len(student_flops) and student_flops[-1] < teacher_flops[k - 1])})
    return rows
