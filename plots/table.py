"""Reading a collected sweep table: which noise settings it holds, which axes vary, and curves over k.

A *setting* is one combination of the noise columns; a sweep over pool seeds repeats each setting, and a curve
averages those repeats (the band is then the envelope of their intervals, so it never understates the spread).
"""
from __future__ import annotations

import pandas as pd

NOISE_AXES = ("noise", "tpr", "fpr", "mu_right", "mu_wrong", "sigma_right", "sigma_wrong", "eps")
"""The columns that say which noise a row had."""
SETTING_AXES = ("verifier",) + NOISE_AXES
"""The columns that make a setting: the verifier and its noise."""

AXIS_LABEL = {
    "tpr": "true-positive rate (TPR)",
    "fpr": "false-positive rate (FPR)",
    "mu_right": "mean score of right candidates (wrong: 0)",
    "mu_wrong": "mean score of wrong candidates",
    "sigma_right": "score spread of right candidates",
    "sigma_wrong": "score spread of wrong candidates (right: 1)",
    "eps": "contamination: share of wrong candidates scored as right",
    "fp_cost": "cost of a false positive",
}
"""Axis labels for the config columns a figure may put on an axis."""


def settings(rows: pd.DataFrame) -> pd.DataFrame:
    """The distinct settings (verifier and noise) in ``rows``, sorted."""
    axes = [c for c in SETTING_AXES if c in rows]
    return rows[axes].drop_duplicates().sort_values(axes, na_position="first").reset_index(drop=True)


def varying(sets: pd.DataFrame) -> list[str]:
    """The numeric noise parameters that differ between settings, most distinct values first."""
    cols = [c for c in sets.columns if c not in ("verifier", "noise") and sets[c].nunique(dropna=False) > 1]
    return sorted(cols, key=lambda c: -sets[c].nunique(dropna=False))


def fixed_text(sets: pd.DataFrame) -> str:
    """The noise parameters that are the same in every setting, as ``name=value`` text."""
    vary = varying(sets)
    parts = [f"{c}={sets[c].iloc[0]:g}" for c in sets.columns
             if c not in ("verifier", "noise") and c not in vary and pd.notna(sets[c].iloc[0])]
    return ", ".join(parts)


def label(setting: pd.Series, sets: pd.DataFrame) -> str:
    """What tells this setting apart from the others: the verifier (when several), the noise family and the
    noise parameters that vary."""
    parts = [str(setting["verifier"])] if "verifier" in sets and sets["verifier"].nunique() > 1 else []
    if setting["noise"] != "none" or sets["noise"].nunique() > 1:
        parts.append(str(setting["noise"]))
    parts += [f"{c}={setting[c]:g}" for c in varying(sets) if pd.notna(setting[c])]
    return " ".join(parts) or "no noise"


def select(rows: pd.DataFrame, setting: pd.Series) -> pd.DataFrame:
    """The rows of one setting."""
    for c, v in setting.items():
        rows = rows[rows[c].isna()] if pd.isna(v) else rows[rows[c] == v]
    return rows


def curve(rows: pd.DataFrame, value: str = "accuracy", lo: str | None = None, hi: str | None = None,
          extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per k: the mean of ``value`` (and of ``extra`` columns) over repeats, with the envelope of the
    repeats' intervals ``lo``/``hi`` (default ``value_lo``/``value_hi``)."""
    lo, hi = lo or f"{value}_lo", hi or f"{value}_hi"
    agg = {value: "mean", lo: "min", hi: "max", **{c: "mean" for c in extra if c in rows}}
    return rows.groupby("k", as_index=False).agg(agg).rename(columns={lo: "lo", hi: "hi"})
