"""Summarise a mutation run: per module and per function, how many mutants were killed, survived or not checked.

    .venv/bin/mutmut results --all true | .venv/bin/python bench/mutation_summary.py [--survivors FILE]

Reads mutmut's result lines (``    search.ledger.x_one_line__mutmut_3: killed``) and prints a Markdown table per
module and the functions with survivors, most first. ``--survivors FILE`` also writes every surviving mutant's name,
one a line, grouped by function (docs/testing.md links the list it made). Timeouts count as killed (the mutant
hung the tests: a test noticed), as mutmut's own score does; "no tests" and "not checked" count as not killed.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"^\s*(?P<name>[\w.ǁ]+)__mutmut_(?P<n>\d+): (?P<status>.+?)\s*$")
"""One result line of ``mutmut results --all true``."""


def parse(lines) -> list[tuple[str, str, int, str]]:
    """(module, function, mutant number, status) for every result line."""
    out = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        name = m.group("name")
        if "ǁ" in name:                                   # a method: module.xǁClassǁmethod
            module, _, function = name.partition(".xǁ")
            function = function.replace("ǁ", ".")
        else:                                              # a function: module.x_name
            module, _, function = name.rpartition(".x_")
        out.append((module, function, int(m.group("n")), m.group("status")))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--survivors", default=None, help="write the surviving mutants' names here")
    args = ap.parse_args(argv)
    rows = parse(sys.stdin)
    if not rows:
        print("error: no mutmut result lines on standard input; pipe `mutmut results --all true` into it",
              file=sys.stderr)
        return 2
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[tuple[str, str], list[int]] = defaultdict(list)
    for module, function, n, status in rows:
        by_module[module][status] += 1
        if status == "survived":
            survivors[(module, function)].append(n)
    total = Counter()
    print("| module | mutants | killed | survived | timeout | no tests | not checked | killed share |")
    print("|---|---|---|---|---|---|---|---|")
    for module in sorted(by_module):
        c = by_module[module]
        total.update(c)
        print(_row(module, c))
    print(_row("**all**", total))
    print()
    print("| function | survivors |")
    print("|---|---|")
    for (module, function), ns in sorted(survivors.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"| {module}.{function} | {len(ns)} |")
    if args.survivors:
        with open(args.survivors, "w") as fh:
            for (module, function), ns in sorted(survivors.items()):
                fh.write(f"# {module}.{function}: {len(ns)}\n")
                fh.writelines(f"{module}.{function} mutant {n}\n" for n in sorted(ns))
    return 0


def _row(label: str, c: Counter) -> str:
    n = sum(c.values())
    killed = c["killed"] + c["timeout"]
    return (f"| {label} | {n} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['no tests']} | "
            f"{c['not checked']} | {killed / n:.1%} |")


if __name__ == "__main__":
    sys.exit(main())
