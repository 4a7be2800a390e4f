"""Every figure a collected sweep table (results.parquet) supports, each drawn only when the table has what it needs:

    python -m plots multirun/noise_flip/results.parquet --out figures/

- ``accuracy_vs_compute``: accuracy of every selection rule against FLOPs and tokens (plots/compute_curves.py);
- ``noise_vs_k_argmax``, ``noise_vs_k_accept``, ``accuracy_vs_noise``, ``accuracy_vs_kl``: accuracy under verifier
  noise beside the closed forms (plots/noise_curves.py);
- ``reward_vs_k``: reward against k for each false-positive cost (plots/reward_curves.py);
- ``accuracy_vs_members``: ensembles of flip verifiers against their number of members (plots/ensemble_curves.py);
- ``accuracy_vs_split``: policy samples k against sampled verdicts K at equal compute (plots/split_curves.py);
- ``settings_vs_k``: any other sweep's settings side by side against k (plots/settings_curves.py);
- ``coverage_fit``: coverage with an exponentiated power law fitted on small k (plots/coverage_fit.py);
- ``strategies_vs_compute``, ``strategies_by_difficulty``: search strategies at equal compute, overall and per
  difficulty bin (plots/strategy_curves.py; the second reads results_by_difficulty.parquet beside the table).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from plots import Figure
from plots.compute_curves import accuracy_vs_compute
from plots.coverage_fit import coverage_fit
from plots.ensemble_curves import accuracy_vs_members
from plots.noise_curves import accuracy_vs_kl, accuracy_vs_noise, noise_vs_k
from plots.reward_curves import reward_vs_k
from plots.settings_curves import settings_vs_k
from plots.split_curves import accuracy_vs_split
from plots.strategy_curves import strategies_by_difficulty, strategies_vs_compute


def plot_table(table_path: Path, out_dir: Path) -> list[Figure]:
    """Draw every figure the table supports into ``out_dir``; return them in reading order."""
    table = pd.read_parquet(table_path)
    out_dir = Path(out_dir)
    if table["strategy"].nunique() > 1:         # a comparison of strategies: compare them, then look at best-of-k
        figures = strategies_vs_compute(table, out_dir)
        bins = Path(table_path).with_name("results_by_difficulty.parquet")
        if bins.exists():
            figures += strategies_by_difficulty(pd.read_parquet(bins), out_dir)
        return figures + coverage_fit(table, out_dir)
    figures = accuracy_vs_compute(table, out_dir)
    figures += noise_vs_k(table, out_dir, "argmax")
    if (table["noise"] == "flip").any():
        figures += noise_vs_k(table, out_dir, "accept")
    figures += accuracy_vs_noise(table, out_dir)
    figures += accuracy_vs_kl(table, out_dir)
    figures += accuracy_vs_members(table, out_dir)
    split = accuracy_vs_split(table, out_dir)
    figures += split or settings_vs_k(table, out_dir)
    figures += reward_vs_k(table, out_dir)
    figures += coverage_fit(table, out_dir)
    return figures
