"""Verifiers from other packages, found by a named entry point.

    python -m search.run verifier=plugin verifier.name=calculator            # entry point "calculator"
    python -m search.run verifier=plugin verifier.name=calculator +verifier.tolerance=0   # with keyword arguments
    python -m verifiers.plugins                                              # list what is installed

A package declares its verifier in its own pyproject.toml; nothing in the lab changes:

    [project.entry-points."verifier_lab.verifiers"]
    calculator = "my_package.verifiers:Calculator"

The entry point names a class or function that takes the task as ``task=`` plus its own keyword arguments and
returns an object with the verifier protocol (``kind``, ``n_params``, ``score``; see ``search.contracts.Verifier``).
The other way in needs no entry point: a YAML with ``_target_: my_package.verifiers.Calculator`` in a folder
``verifier/`` on Hydra's search path (``hydra.searchpath=[pkg://my_package.conf]``), chosen as ``verifier=NAME``.
``python -m verifiers.contract`` checks either kind against the verifier contract.
"""
from __future__ import annotations

import sys
from importlib.metadata import entry_points

from search.contracts import LabError, Task

GROUP = "verifier_lab.verifiers"
"""The entry-point group the lab reads verifier plug-ins from."""


def available() -> dict[str, str]:
    """Installed verifier plug-ins: entry-point name -> ``module:attribute``."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load(task: Task, name: str, **kwargs):
    """Build the verifier of the entry point ``name`` with ``task=task`` and ``kwargs``; LabError when no installed
    package declares that name, or when its object cannot be built."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        names = ", ".join(sorted(available())) or "none installed"
        raise LabError(f"no verifier plug-in named '{name}' (entry-point group {GROUP}; installed: {names}): "
                       f"pip install the package that provides it, or fix verifier.name")
    try:
        factory = found[0].load()
    except Exception as err:  # noqa: BLE001 - whatever the third-party import raises, name it in one line
        raise LabError(f"verifier plug-in '{name}' ({found[0].value}) failed to import: "
                       f"{type(err).__name__}: {err}") from None
    try:
        verifier = factory(task=task, **kwargs)
    except TypeError as err:
        raise LabError(f"verifier plug-in '{name}' ({found[0].value}) does not take these arguments: {err}; "
                       f"fix the +verifier.KEY=VALUE overrides") from None
    missing = [attr for attr in ("kind", "n_params", "score") if not hasattr(verifier, attr)]
    if missing or getattr(verifier, "kind", None) not in ("outcome", "process"):
        raise LabError(f"verifier plug-in '{name}' ({found[0].value}) does not implement the verifier protocol "
                       f"(missing: {', '.join(missing) or 'kind must be outcome or process'}); see "
                       f"search.contracts.Verifier")
    verifier.name = getattr(verifier, "name", name)
    return verifier


def main() -> int:
    """CLI: list the installed verifier plug-ins."""
    plugins = available()
    if not plugins:
        print(f"no verifier plug-ins installed (entry-point group {GROUP})")
    for name, value in sorted(plugins.items()):
        print(f"{name:20s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
