"""Figures, read only from a run summary or a collected table (never from live objects)."""
from pathlib import Path


def save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    """Write a figure as NAME.png (150 dpi, for the README and reports) and NAME.svg (for papers)."""
    paths = [Path(out_dir) / f"{name}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths
