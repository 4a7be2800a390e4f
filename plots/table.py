"""Reading a collected sweep table: which settings it holds, which axes vary, and curves over k.

A *setting* is one combination of the verifier, its noise columns and every other swept config field (the dotted
columns, such as a plug-in's ``verifier.miss_score``); a sweep over pool or noise seeds repeats each setting, and a
curve averages only those repeats (the band is then the envelope of their intervals, so it never understates the
spread).
"""
from __future__ import annotations

import pandas as pd

from verifiers.noise import noise_fields

NOISE_AXES = ("noise",) + noise_fields()
"""The columns that say which noise a row had (every known noise family's ``fields``)."""
SETTING_AXES = ("verifier",) + NOISE_AXES
"""The named columns that make a setting: the verifier and its noise (swept dotted columns are added)."""


def config_axes(rows: pd.DataFrame) -> list[str]:
    """The swept config fields without a named column (``search.analysis.tables.swept_fields``): dotted names."""
    return [c for c in rows.columns if "." in c]

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
    """The distinct settings (verifier, noise and every swept config field) in ``rows``, sorted."""
    axes = [c for c in SETTING_AXES if c in rows] + config_axes(rows)
    return rows[axes].drop_duplicates().sort_values(axes, na_position="first").reset_index(drop=True)


def varying(sets: pd.DataFrame) -> list[str]:
    """The numeric noise parameters that differ between settings, most distinct values first."""
    cols = [c for c in sets.columns if c not in ("verifier", "noise") and sets[c].nunique(dropna=False) > 1]
    return sorted(cols, key=lambda c: -sets[c].nunique(dropna=False))


def fmt(value) -> str:
    """A config value for a label: floats short, anything else as text."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def fixed_text(sets: pd.DataFrame) -> str:
    """The noise parameters and config fields that are the same in every setting, as ``name=value`` text."""
    vary = varying(sets)
    parts = [f"{c}={fmt(sets[c].iloc[0])}" for c in sets.columns
             if c not in ("verifier", "noise") and c not in vary and pd.notna(sets[c].iloc[0])]
    return ", ".join(parts)


def label(setting: pd.Series, sets: pd.DataFrame) -> str:
    """What tells this setting apart from the others: the verifier (when several), the noise family and the
    noise parameters that vary."""
    parts = [str(setting["verifier"])] if "verifier" in sets and sets["verifier"].nunique() > 1 else []
    if setting["noise"] != "none" or sets["noise"].nunique() > 1:
        parts.append(str(setting["noise"]))
    parts += [f"{c}={fmt(setting[c])}" for c in varying(sets) if pd.notna(setting[c])]
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
