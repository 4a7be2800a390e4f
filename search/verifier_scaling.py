"""The verifier scaling study: train learned verifiers over a grid of families, sizes and label amounts, and measure
what each buys in search on the default evaluation set.

    python -m search.verifier_scaling                               # conf/scaling/default.yaml into multirun/scaling
    python -m search.verifier_scaling --grid small --out multirun/scaling_small
    lab verifier-scaling --labels labels.jsonl --pools RUN_DIR      # reuse labels and evaluation pools

A grid file (``conf/scaling/*.yaml``) names the label set, the verifier families, sizes and label amounts, the cells
(unions of their products) and the training schedule. The study has four phases, each kept on disk and skipped when a
rerun finds it done, so a killed study resumes where it stopped:

1. ``labels.jsonl``: the tiny policy's solutions of training problems with Monte-Carlo step labels
   (``search.training.labels``). One set of solutions serves every family: its exact step labels (the task's checker,
   the analogue of human step labels), its Monte-Carlo labels, its outcomes.
2. ``pools/``: the evaluation pools, the main job's best-of-k run at budget ``max_k`` on the default evaluation set
   (``search.engine.study_pools``).
3. ``cells/<family>-<size>-<amount>/``: one verifier per cell, trained by ``search.training.train_prm`` (checkpoint
   and ``training.json`` with its training FLOPs), then ``scores.json`` (its scores of every pool candidate, computed
   in this process with the same weights its vLLM pooling server serves: ``verifier=prm verifier.checkpoint=DIR``)
   and ``metrics.json`` (``search.analysis.verifier_scaling``).
4. ``cells.csv``, ``results.parquet`` (one row per cell and k), the figures and ``report.md`` / ``report.html``.

``study_config.json`` records the grid that made the directory; a rerun with another grid is refused.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from search.build import CONF_DIR
from search.cli import exit_on_lab_error, fail
from search.contracts import LabError

GRIDS = Path(CONF_DIR) / "scaling"
"""Where the named grids live (``--grid default`` is ``conf/scaling/default.yaml``)."""

FAMILIES = {
    "exact": ("exact", "pointwise"),
    "mc": ("hard", "pointwise"),
    "outcome": ("outcome", "pointwise"),
    "pairwise": ("outcome", "pairwise"),
}
"""Family -> (train_prm --label, --objective): a PRM on exact step labels, a PRM on Monte-Carlo (hard) labels
(Math-Shepherd), an outcome reward model, and an outcome model trained to rank a problem's solutions (pairwise)."""

SIZE_KEYS = ("depth", "layers", "width")
"""What a size may set (train_prm's --depth, or --layers with --width for a fresh transformer); an empty size is the
policy's own transformer."""


@dataclass(frozen=True)
class Cell:
    """One verifier of the grid."""

    family: str
    """A key of ``FAMILIES``."""
    size: str
    """A key of the grid's ``sizes``."""
    amount: int | None
    """Labelled training solutions (nested subsets of the label file); None: all of them."""
    training: tuple = ()
    """(key, value) overrides of the grid's training schedule for this cell."""

    @property
    def name(self) -> str:
        """The cell's directory name."""
        return f"{self.family}-{self.size}-{'all' if self.amount is None else self.amount}"


def load_grid(name_or_path: str) -> dict:
    """A grid file by name (``conf/scaling/NAME.yaml``) or path, checked; LabError naming the problem."""
    from search.engine.study_dirs import read_grid

    path, grid = read_grid(name_or_path, GRIDS, ("labels", "sizes", "cells", "training", "max_k"))
    for size, spec in grid["sizes"].items():
        if set(spec or {}) - set(SIZE_KEYS):
            raise LabError(f"{path}: size {size} sets {sorted(set(spec) - set(SIZE_KEYS))}; a size sets only "
                           f"{', '.join(SIZE_KEYS)}")
    cells(grid)
    return grid


def cells(grid: dict) -> list[Cell]:
    """Every cell of the grid, in order, each once: the union of the products its ``cells`` entries list."""
    out: dict[str, Cell] = {}
    for entry in grid["cells"]:
        for key in ("family", "size", "amount"):
            if key not in entry:
                raise LabError(f"a cells entry has no '{key}': each lists families, sizes and amounts")
        for family, size, amount in product(entry["family"], entry["size"], entry["amount"]):
            if family not in FAMILIES:
                raise LabError(f"cells: family {family!r} is not one of {', '.join(FAMILIES)}")
            if size not in grid["sizes"]:
                raise LabError(f"cells: size {size!r} is not in the grid's sizes ({', '.join(grid['sizes'])})")
            if amount is not None and (not isinstance(amount, int) or amount < 1):
                raise LabError(f"cells: amount {amount!r} must be a positive number of solutions, or null (all)")
            cell = Cell(family, size, amount, tuple(sorted((entry.get("training") or {}).items())))
            schedule(cell, grid)                # refuse a cell that cannot be scheduled before any cell trains
            out.setdefault(cell.name, cell)
    return list(out.values())


def schedule(cell: Cell, grid: dict) -> dict:
    """The cell's training schedule: the grid's, with the cell's own overrides; LabError when it gives neither
    ``steps`` nor an ``epochs`` count over a number of solutions."""
    merged = {**grid["training"], **dict(cell.training)}
    if "steps" not in merged and (cell.amount is None or "epochs" not in merged):
        raise LabError(f"cell {cell.name}: give its training 'steps' (a schedule in epochs needs a number of "
                       f"solutions, not null, and the grid's training.epochs)")
    return merged


def train_args(cell: Cell, grid: dict, labels: Path, out: Path) -> argparse.Namespace:
    """``train_prm``'s arguments for one cell: the family's label and objective, the size, the amount, and the
    schedule: ``epochs`` passes over the cell's solutions (at least ``min_steps`` steps) unless the cell sets
    ``steps``."""
    from search.training import train_prm

    label, objective = FAMILIES[cell.family]
    plan = schedule(cell, grid)
    argv = ["--labels", str(labels), "--out", str(out), "--label", label, "--objective", objective,
            "--select", "within"]
    for key, value in (grid["sizes"][cell.size] or {}).items():
        argv += [f"--{key}", str(value)]
    if cell.amount is not None:
        argv += ["--max-solutions", str(cell.amount)]
    for key in ("batch", "lr", "warmup", "eval_every", "val_share", "seed", "threads", "minutes"):
        if key in plan:
            argv += [f"--{key.replace('_', '-')}", str(plan[key])]
    args = train_prm.parse_args(argv)
    if "steps" in plan:
        args.steps = int(plan["steps"])
    else:
        args.steps = max(int(plan.get("min_steps", 1)), -(-int(plan["epochs"]) * cell.amount // args.batch))
    return args


def make_labels(grid: dict, path: Path) -> None:
    """Phase 1: the label file, made by the tiny policy on its managed server behind the generation cache."""
    from search.training.labels import agreement, label_tiny_policy, write_jsonl

    spec = grid["labels"]
    labels = label_tiny_policy(spec["problems"], spec["samples"], spec["rollouts"], spec.get("seed", 0),
                               spec.get("cache", ".lab_cache/generations.sqlite"))
    write_jsonl(labels, path)
    print(f"labels: {len(labels)} solutions -> {path}; agreement with the step checker "
          f"{json.dumps(agreement(labels))}", flush=True)


def cell_metrics(cell: Cell, cdir: Path, table, answers: dict, majority, ks: list[int]) -> dict:
    """Everything the study reports of one verifier: its training record, quality against the exact oracles, the
    best-of-k curve with intervals and its peak, the weighted vote with its scores, the matched noise and its
    predicted curves, the generation-verification gap. ``answers``: the pools' answers by problem; ``majority``:
    each problem's majority-vote accuracy at the largest k, in the table's problem order."""
    from search.analysis import verifier_scaling as vs
    from search.analysis.estimators import bootstrap_ci
    from search.analysis.verifier_metrics import summarize

    record = json.loads((cdir / "training.json").read_text())
    quality = summarize(table, {"threshold": vs.THRESHOLD})
    outcome = quality["levels"]["outcome"]
    # an outcome-trained model (ORM, pairwise) is read at separators it was never trained on: no step metrics
    step = quality["levels"].get("step", {}) if FAMILIES[cell.family][0] != "outcome" else {}
    gap = vs.generation_verification_gap(table)
    if not step:
        gap = {k: v for k, v in gap.items() if not k.startswith("verifier_step_")}
    curve = vs.curve_summary(vs.argmax_matrix(table, ks), ks)
    matched = vs.matched_curves(table, quality, ks)
    votes = vs.weighted_matrix(table, answers, ks)
    weighted = vs.curve_summary(votes, ks)
    top, vote = curve.iloc[-1], weighted.iloc[-1]
    # paired over problems: the weighted vote at max_k against majority vote on the same pools
    lift = votes[:, -1] - majority
    lift_lo, lift_hi = bootstrap_ci(lift)
    return {
        "cell": cell.name, "family": cell.family, "size": cell.size, "amount": cell.amount,
        **{k: record.get(k) for k in ("train_solutions", "n_params", "steps_done", "best_step", "tokens",
                                      "training_flops", "train_minutes", "val_auroc_within")},
        "auroc": outcome["auroc"], "ece": outcome["ece"], "brier": outcome["brier"], "tpr": outcome["tpr"],
        "fpr": outcome["fpr"], "step_auroc": step.get("auroc"), "step_within_auroc": step.get("within_problem_auroc"),
        **vs.within_auroc_interval(table),
        "best_of_max_k": float(top.accuracy), "best_of_max_k_ci_low": float(top.ci_low),
        "best_of_max_k_ci_high": float(top.ci_high), **vs.peak(curve),
        "weighted_max_k": float(vote.accuracy), "weighted_max_k_ci_low": float(vote.ci_low),
        "weighted_max_k_ci_high": float(vote.ci_high), "weighted_minus_majority": float(lift.mean()),
        "weighted_minus_majority_ci_low": lift_lo, "weighted_minus_majority_ci_high": lift_hi,
        "matched_flip_best_of_max_k": float(matched["flip"][-1]) if "flip" in matched else None,
        "matched_scores": quality["matched_scores"].get("outcome"),
        "matched_scores_best_of_max_k": float(matched["scores"][-1]) if "scores" in matched else None,
        **gap,
        "curve": curve.to_dict("list"), "weighted_curve": weighted.to_dict("list"),
        "matched_curves": {k: v.tolist() for k, v in matched.items()},
    }


def collect(out: Path, names: list[str], baselines: dict, ks: list[int]):
    """``cells.csv`` (one row per cell, its scalar metrics) and ``results.parquet`` (one row per cell, rule and k:
    the verifier's argmax, the matched noise's predictions, and the baselines as cell ``baseline``); returns both."""
    import pandas as pd

    from search.analysis import verifier_scaling as vs

    metrics = [json.loads((out / "cells" / name / "metrics.json").read_text()) for name in names]
    rows = []
    for m in metrics:
        for rule, key in (("argmax", "curve"), ("weighted", "weighted_curve")):
            rows += [{"cell": m["cell"], "rule": rule, "k": k, "accuracy": a, "ci_low": lo, "ci_high": hi}
                     for k, a, lo, hi in zip(*(m[key][c] for c in ("k", "accuracy", "ci_low", "ci_high")))]
        for rule, values in m["matched_curves"].items():
            rows += [{"cell": m["cell"], "rule": f"matched_{rule}", "k": k, "accuracy": a}
                     for k, a in zip(ks, values)]
    for rule, matrix in baselines.items():
        curve = vs.curve_summary(matrix, ks)
        rows += [{"cell": "baseline", "rule": rule, **r} for r in curve.to_dict("records")]
    results = pd.DataFrame(rows)
    results.to_parquet(out / "results.parquet", index=False)
    frame = pd.DataFrame([{k: v for k, v in m.items() if k not in ("curve", "weighted_curve", "matched_curves",
                                                                            "matched_scores")}
                          for m in metrics])
    frame.to_csv(out / "cells.csv", index=False)
    return frame, results


def study(grid: dict, out: Path, labels: Path | None = None, pools: Path | None = None) -> Path:
    """Run every phase not done yet; returns the path of report.md."""
    import pandas as pd

    from plots.scaling_curves import write_report
    from search.analysis import verifier_scaling as vs
    from search.engine.records import write_json_atomic
    from search.engine.stored_pools import load_pools
    from search.engine.study_dirs import check_study_dir
    from search.engine.study_pools import draw_pools, pool_answers, score_pools
    from search.serving.checkpoint import SHIPPED
    from search.training import train_prm
    from search.training.labels import read_jsonl

    labels = labels or out / "labels.jsonl"
    pools = pools or out / "pools"
    check_study_dir(out, {"grid": grid, "labels": str(labels.resolve()), "pools": str(pools.resolve())},
                    what="another grid or inputs")
    if not labels.exists():
        make_labels(grid, labels)
    grid_cells = cells(grid)
    if any(c.family == "mc" for c in grid_cells) and any(not sol.hard for sol in read_jsonl(labels)):
        raise LabError(f"the grid has Monte-Carlo (mc) cells but {labels} was made without rollouts: label with "
                       f"rollouts (the grid's labels.rollouts), or drop the mc family")
    if not (pools / "summary.json").exists():
        draw_pools(pools, grid["max_k"], grid.get("pools", []))
    task, stored = load_pools(pools)
    ks = list(range(1, grid["max_k"] + 1))
    if any(len(sp.candidates) < grid["max_k"] for sp in stored):
        raise LabError(f"{pools} has pools smaller than max_k={grid['max_k']}: give a best-of-k run at budget "
                       f"{grid['max_k']} or more")
    answers, plain = pool_answers(task, stored)
    baselines = vs.baseline_matrices(plain, answers, ks)
    for i, cell in enumerate(grid_cells, 1):
        cdir = out / "cells" / cell.name
        if (cdir / "metrics.json").exists():
            continue
        t0 = time.time()
        if not (cdir / "training.json").exists():
            args = train_args(cell, grid, labels, cdir)
            print(f"== [{i}/{len(grid_cells)}] {cell.name}: {args.steps} steps", flush=True)
            train_prm.train(args)
        if (cdir / "scores.parquet").exists():
            table = pd.read_parquet(cdir / "scores.parquet")
        else:
            table = score_pools(cdir, task, stored)
            table.to_parquet(cdir / "scores.parquet.tmp", index=False)       # a kill leaves no half-written file
            (cdir / "scores.parquet.tmp").replace(cdir / "scores.parquet")
        metrics = cell_metrics(cell, cdir, table, answers, baselines["majority"][:, -1], ks)
        write_json_atomic(cdir / "metrics.json", metrics)
        print(f"== {cell.name}: within AUROC {metrics['within_auroc']:.3f}, best-of-{grid['max_k']} "
              f"{metrics['best_of_max_k']:.3f} ({(time.time() - t0) / 60:.1f} min)", flush=True)
    frame, results = collect(out, [c.name for c in grid_cells], baselines, ks)
    policy = json.loads((SHIPPED["tiny-policy"] / "training.json").read_text())
    return write_report(out, frame, results, grid, policy)


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m search.verifier_scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="default", help="a grid in conf/scaling/ (default, small) or a YAML path")
    ap.add_argument("--out", type=Path, default=None, help="study directory (default: multirun/scaling_<grid>)")
    ap.add_argument("--labels", type=Path, default=None,
                    help="an existing label file (python -m search.prm_labels) instead of making one")
    ap.add_argument("--pools", type=Path, default=None,
                    help="an existing best-of-k run directory whose pools to score instead of running one")
    args = ap.parse_args(argv)
    for given, what in ((args.labels, "--labels"), (args.pools, "--pools")):
        if given is not None and not given.exists():
            fail(f"{what} {given} does not exist: give an existing {what[2:]} path, or leave it out to make one")
    with exit_on_lab_error():
        grid = load_grid(args.grid)
        out = args.out or Path("multirun") / f"scaling_{Path(args.grid).stem}"
        report = study(grid, out, args.labels, args.pools)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
