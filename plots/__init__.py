"""Figures, read only from a run summary or a collected table (never from live objects).

Shared here: how a figure is written (PNG for reports and the README, SVG for papers), what a figure is (its files
and one sentence on what it shows), each selection rule's style, and the budget axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One figure a plotting function wrote."""

    name: str
    """File stem, e.g. ``accuracy_vs_compute``."""
    meaning: str
    """One sentence on what the curves show, for the sweep report."""
    paths: list[Path] = field(default_factory=list)
    """The files written (PNG and SVG)."""


RULE_STYLE = {
    "coverage": ("coverage (pass@k)", "black", "-"),
    "argmax": ("best-of-k (argmax of verifier)", "tab:blue", "-"),
    "majority": ("majority vote", "tab:orange", "-"),
    "weighted": ("verifier-weighted vote", "tab:green", "--"),
    "accept": ("accept-or-abstain (rejection sampling)", "tab:red", ":"),
}
"""Label, colour and line style of each selection rule, shared by every figure."""


def save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    """Write a figure as NAME.png (150 dpi, for the README and reports) and NAME.svg (for papers); close it."""
    import matplotlib.pyplot as plt

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = [Path(out_dir) / f"{name}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def budget_axis(ax, ks) -> None:
    """A log2 x axis labelled with the budgets themselves."""
    ks = sorted(int(k) for k in ks)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("budget k (samples per problem)")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display is needed or used)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
