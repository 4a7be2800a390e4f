"""What the study commands that train models (the verifier scaling study, the train-versus-test frontier, expert
iteration) share about their inputs and directories: reading a named grid file, and refusing a study directory that
another grid made.

A study's directory holds ``study_config.json``, the part of its grid (and inputs) that makes what is on disk. A
rerun with the same record resumes; one with another record is refused in one line naming what differs, so a
directory never mixes two grids' results.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from search.contracts import LabError

RECORD_FILE = "study_config.json"
"""The file in a study directory that records the grid (and inputs) that made it."""


def read_grid(name_or_path: str, folder: Path, required: Sequence[str]) -> tuple[Path, dict]:
    """The grid file ``folder/NAME.yaml`` (for a bare name) or at a path, parsed, a mapping with every ``required``
    key; returns (its path, the grid). LabError naming the file and the fix otherwise."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise LabError(f"--grid {name_or_path}: no such grid file; give one of {names} or a path to a YAML file")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise LabError(f"{path} is not valid YAML ({str(err).splitlines()[0]}): fix the file") from None
    if not isinstance(grid, dict):
        raise LabError(f"{path}: a grid is a mapping of {', '.join(required)} (see {_shown(folder / 'default.yaml')})")
    for key in required:
        if key not in grid:
            raise LabError(f"{path}: the grid has no '{key}' (see {_shown(folder / 'default.yaml')})")
    return path, grid


def _shown(path: Path) -> str:
    """A path inside the repository as the repository names it (conf/...), any other as it is."""
    parts = path.parts
    return str(Path(*parts[parts.index("conf"):])) if "conf" in parts else str(path)


def changed_keys(before: dict, record: dict) -> list[str]:
    """The top-level keys whose values differ between two records (a key in one only counts)."""
    return sorted(k for k in set(before) | set(record) if before.get(k) != record.get(k))


def check_study_dir(out: Path, record: dict, what: str = "another grid",
                    changed: Callable[[dict, dict], list[str]] = changed_keys) -> None:
    """Refuse ``out`` when its record differs from ``record`` (``changed(before, record)`` names the differences: by
    default every differing key; a study that accepts some changes, such as more rounds, passes its own); then
    write ``record`` as the directory's. ``what`` says what made the other study, in the error line."""
    path = out / RECORD_FILE
    if path.exists():
        differ = changed(json.loads(path.read_text()), record)
        if differ:
            raise LabError(f"{out} holds a study made with {what} (its {', '.join(differ)} differ): give a new "
                           f"--out, or delete {out}")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
