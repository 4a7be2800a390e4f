"""The layout's rules, read from the source: no library module imports an entry point, and no import circle.

Entry points (commands a user runs) may import anything; everything else is library code that an entry point
composes through ``search.build``. A circle between modules, or a library importing a command, is what made the old
flat layout hard to hold in one's head.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search", "verifiers", "plots")
ENTRY_POINTS = {
    "search.run", "search.measure", "search.verifier_study", "search.prm_labels", "search.collect",
    "search.report", "search.server", "search.lab", "search.training.train_policy", "search.training.train_prm",
    "search.training.stand_ins", "search.training.train_judge",
    "plots.__main__", "search.offline", "search.pools", "search.allocate", "search.confidence_vote",
    "search.verifier_scaling", "search.frontier", "search.expert_iteration",
}
"""Modules that are commands (``lab --help`` lists them)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lab_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, modules: set[str]) -> set[str]:
    """Every lab module this file imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n in modules}
    return out


def graph() -> dict[str, set[str]]:
    mods = lab_modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_the_entry_point_list_is_real():
    assert ENTRY_POINTS <= set(lab_modules())
    from search.lab import COMMANDS

    assert {module for module, _ in COMMANDS.values()} - {"verifiers.contract", "verifiers.plugins", "verifiers.template",
                                                           "plots"} \
        <= ENTRY_POINTS


def test_no_library_module_imports_an_entry_point():
    bad = {f"{name} imports {dep}" for name, deps in graph().items() if name not in ENTRY_POINTS
           for dep in deps & ENTRY_POINTS}
    assert not bad, sorted(bad)


def test_plots_read_tables_and_never_run_the_lab():
    """plots/ may use pure analysis helpers and the noise registry, never the runner, the composition root or a
    server."""
    allowed = ("plots.", "search.analysis.", "search.contracts", "verifiers.noise")
    bad = {f"{name} imports {dep}" for name, deps in graph().items() if name.startswith("plots")
           and name not in ENTRY_POINTS for dep in deps if not dep.startswith(allowed) and dep != "plots"}
    assert not bad, sorted(bad)


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node)


def test_light_modules_stay_light():
    """Configs, estimators, tables and plots load without torch or vllm (STYLE.md's house rule)."""
    import subprocess
    import sys

    code = ("import sys, search.build, search.engine.runner, search.analysis.tables, plots.report, verifiers.noise;"
            "print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
