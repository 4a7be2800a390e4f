"""Pytest hooks. Only one: under mutation testing, run a mutant's tests fastest first.

mutmut (docs/testing.md) hands pytest the tests that cover a mutated function in no particular order and stops at the
first failure (`-x`), so a mutant that a 0.1 s test kills can wait behind a 20 s simulation. Ordering by the
durations mutmut measured in its clean run makes killed mutants cheap; results are unchanged (same tests, same
verdict). Outside mutmut (no MUTANT_UNDER_TEST in the environment) this does nothing.
"""

import json
import os
from pathlib import Path


def _mutmut_durations() -> dict[str, float]:
    """Seconds per test id from mutmut's stats file, or {} when there is none."""
    for stats in (Path("mutants/mutmut-stats.json"), Path("mutmut-stats.json")):
        if stats.is_file():
            try:
                return dict(json.loads(stats.read_text())["duration_by_test"])
            except (ValueError, KeyError):
                return {}
    return {}


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    durations = _mutmut_durations()
    if durations:
        items.sort(key=lambda item: durations.get(item.nodeid.removeprefix("mutants/"), 0.0))
