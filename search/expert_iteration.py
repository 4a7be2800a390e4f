"""Expert iteration: search on training problems with a verifier, keep what it accepts, fine-tune the policy on it,
measure, repeat (STaR, ReST-EM, rStar-Math's rounds). The verifier is the knob: one loop per arm of the grid.

    python -m search.expert_iteration                   # conf/expert/default.yaml -> multirun/expert_default
    python -m search.expert_iteration --grid small --out /tmp/expert   # the tests' grid
    lab expert-iteration

A grid file (``conf/expert/*.yaml``) names the starting policy, the rounds, the training problems and samples per
problem, the arms (each a verifier: Hydra overrides of ``verifier=`` and ``noise=``, and the acceptance threshold),
the fine-tuning schedule and the evaluation pools. Per arm and round ``r`` (directory ``arms/<arm>/round-<r>/``),
each phase kept on disk and skipped when a rerun finds it done:

1. ``samples.jsonl``: the previous round's policy (round 1: the start) samples ``samples`` solutions of each of the
   same ``problems`` training problems (served by vLLM behind the generation cache; round 1 is shared by every arm,
   so the arms start from the same draws), with the arm's verifier's score of each and whether it accepted it, and
   the exact grade beside it (never used for selection unless the arm's verifier is the exact oracle).
2. ``policy/``: the previous policy fine-tuned on the accepted solutions (distinct ones, at most ``keep_per_problem``
   per problem), its training.json with the tokens and cumulative training FLOPs.
3. ``eval/``: the main job's best-of-k pools at ``max_k`` on the default evaluation set from that policy.

Round 0 is the start policy's evaluation (``start/eval``). Then ``rounds.csv`` (one row per arm and round: pass@1,
pass@k and majority at every measured k, answer diversity, the data kept and how much of it is wrong),
``curves.parquet``, the figures and ``report.md`` / ``report.html`` (``plots/expert_curves.py``).
``study_config.json`` records the grid; a rerun with another grid is refused, except for more ``rounds``.
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

GRIDS = Path(CONF_DIR) / "expert"
"""Where the named grids live (``--grid default`` is ``conf/expert/default.yaml``)."""


def load_grid(name_or_path: str) -> dict:
    """A grid file by name (``conf/expert/NAME.yaml``) or path, checked; LabError naming the problem."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = GRIDS / f"{name_or_path}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in GRIDS.glob("*.yaml")))
        raise LabError(f"--grid {name_or_path}: no such grid file; give one of {names} or a path to a YAML file")
    grid = yaml.safe_load(path.read_text())
    for key in ("start", "rounds", "problems", "samples", "keep_per_problem", "arms", "finetune", "max_k"):
        if key not in grid:
            raise LabError(f"{path}: the grid has no '{key}' (see conf/expert/default.yaml)")
    if int(grid["rounds"]) < 1 or int(grid["samples"]) < 1 or int(grid["problems"]) < 1:
        raise LabError(f"{path}: rounds, samples and problems must be at least 1")
    for arm, spec in grid["arms"].items():
        if not isinstance(spec, dict) or "verifier" not in spec:
            raise LabError(f"{path}: arm {arm} needs 'verifier': a list of Hydra overrides (e.g. "
                           f"[verifier=outcome_oracle])")
    return grid


def _check_study_dir(out: Path, grid: dict) -> None:
    """Refuse a directory another grid made (more rounds are allowed); record this one's."""
    record = {k: v for k, v in grid.items() if k != "rounds"}
    path = out / "study_config.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != record:
            changed = sorted(k for k in set(before) | set(record) if before.get(k) != record.get(k))
            raise LabError(f"{out} holds a study made with another grid (its {', '.join(changed)} differ): give a "
                           f"new --out, or delete {out}")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def sample_and_verify(grid: dict, arm: str, checkpoint: Path, round_: int, path: Path) -> None:
    """Phase 1: the policy's samples of the training problems, each scored by the arm's verifier (through the lab's
    own config and build path, so noise, learned and plug-in verifiers all work), written atomically."""
    from search.build import build_policy, build_task, build_verifier, compose
    from search.contracts import Candidate
    from search.training.labels import label_solutions

    spec = grid["arms"][arm]
    # the evaluation's overrides too: the same server options, so the server that measured this policy samples it
    cfg = compose([f"policy.checkpoint={checkpoint}", *grid.get("pools", []), *spec["verifier"]])
    task = build_task(cfg)
    problems = task.problems("train", int(grid["problems"]))
    solutions = label_solutions(task, build_policy(cfg), problems, int(grid["samples"]), rollouts=0,
                                seed=int(grid.get("seed", 0)) + round_)
    verifier, _ = build_verifier(cfg, task)
    by_id = {p.id: p for p in problems}
    rows, threshold = [], float(spec.get("threshold", 0.5))
    groups: dict[str, list] = {}
    for sol in solutions:
        groups.setdefault(sol.problem_id, []).append(sol)
    try:
        for pid, sols in groups.items():
            texts = ["\n".join(s.steps) for s in sols]
            candidates = [Candidate(steps=s.steps, answer=task.extract_answer(t), text=t, prompt_tokens=0,
                                    completion_tokens=0, finish_reason="stop") for s, t in zip(sols, texts)]
            scores = verifier.score(by_id[pid], candidates).final
            rows += [{"problem_id": pid, "prompt": s.prompt, "text": t, "answer": c.answer, "correct": bool(s.correct),
                      "score": float(sc), "accepted": bool(sc >= threshold)}
                     for s, t, c, sc in zip(sols, texts, candidates, scores)]
    finally:
        close = getattr(verifier, "close", None)
        if close:
            close()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def kept(rows: list[dict], keep_per_problem: int) -> list[dict]:
    """The accepted solutions to train on: distinct texts, at most ``keep_per_problem`` per problem, in sample
    order."""
    out, count, seen = [], {}, set()
    for r in rows:
        key = (r["problem_id"], r["text"])
        if r["accepted"] and key not in seen and count.get(r["problem_id"], 0) < keep_per_problem:
            seen.add(key)
            count[r["problem_id"]] = count.get(r["problem_id"], 0) + 1
            out.append(r)
    return out


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def policy_dir(grid: dict, out: Path, arm: str, round_: int) -> Path:
    """The policy of a round: round 0 is the start (a shipped name or a directory)."""
    from search.serving import checkpoint as ckpt

    return ckpt.resolve(grid["start"]) if round_ == 0 else out / "arms" / arm / f"round-{round_}" / "policy"


def eval_dir(out: Path, arm: str, round_: int) -> Path:
    return out / "start" / "eval" if round_ == 0 else out / "arms" / arm / f"round-{round_}" / "eval"


class OneServer:
    """Keeps vLLM servers of one policy checkpoint at a time: the server that measured a round's policy samples the
    next round with it; moving to another checkpoint stops every server first (the cores and memory go to it)."""

    def __init__(self):
        self.current: Path | None = None

    def use(self, checkpoint: Path) -> None:
        from search.serving.vllm_server import stop_all

        if self.current is not None and Path(checkpoint) != self.current:
            stop_all()
        self.current = Path(checkpoint)

    def close(self) -> None:
        from search.serving.vllm_server import stop_all

        stop_all()
        self.current = None


def run_round(grid: dict, out: Path, arm: str, r: int, servers: OneServer) -> None:
    """Phases 1-3 of one arm's round ``r`` (each skipped when done)."""
    from search.engine.study_pools import draw_pools
    from search.training.train_policy import finetune

    rdir = out / "arms" / arm / f"round-{r}"
    rdir.mkdir(parents=True, exist_ok=True)
    prev = policy_dir(grid, out, arm, r - 1)
    t0 = time.time()
    if not (rdir / "samples.jsonl").exists():
        servers.use(prev)
        sample_and_verify(grid, arm, prev, r, rdir / "samples.jsonl")
    rows = read_rows(rdir / "samples.jsonl")
    if not (rdir / "policy" / "training.json").exists():
        keep = kept(rows, int(grid["keep_per_problem"]))
        spec = grid["finetune"]
        finetune(prev, [(k["prompt"], k["text"]) for k in keep], rdir / "policy", epochs=int(spec.get("epochs", 1)),
                 batch=int(spec.get("batch", 64)), lr=float(spec.get("lr", 5e-4)), warmup=int(spec.get("warmup", 10)),
                 seed=int(spec.get("seed", 0)) + r, extra={"arm": arm, "round": r})
    if not (eval_dir(out, arm, r) / "summary.json").exists():
        servers.use(rdir / "policy")
        draw_pools(eval_dir(out, arm, r), int(grid["max_k"]), grid.get("pools", []), rdir / "policy")
    print(f"== {arm} round {r} ({(time.time() - t0) / 60:.1f} min)", flush=True)


def study(grid: dict, out: Path) -> Path:
    """Run every phase not done yet (each arm's rounds in turn); returns the path of report.md."""
    from search.engine.study_pools import draw_pools

    _check_study_dir(out, grid)
    servers = OneServer()
    try:
        if not (eval_dir(out, "", 0) / "summary.json").exists():
            servers.use(policy_dir(grid, out, "", 0))
            draw_pools(eval_dir(out, "", 0), int(grid["max_k"]), grid.get("pools", []), policy_dir(grid, out, "", 0))
        for arm in grid["arms"]:
            for r in range(1, int(grid["rounds"]) + 1):
                run_round(grid, out, arm, r, servers)
    finally:
        servers.close()
    return analyse(grid, out)


def analyse(grid: dict, out: Path) -> Path:
    """rounds.csv, curves.parquet, figures and the report; returns report.md's path."""
    import numpy as np
    import pandas as pd

    from plots.expert_curves import write_report
    from search.analysis import verifier_scaling as vs
    from search.engine.stored_pools import load_pools
    from search.engine.study_pools import pool_answers

    from search.analysis.estimators import bootstrap_ci

    ks = list(range(1, int(grid["max_k"]) + 1))
    rows, curves, start = [], [], None
    for arm in grid["arms"]:
        for r in range(0, int(grid["rounds"]) + 1):
            task, stored = load_pools(eval_dir(out, arm, r))
            answers, plain = pool_answers(task, stored)
            base = vs.baseline_matrices(plain, answers, ks)
            row = {"arm": arm, "round": r}
            if r == 0:
                start = base
            # paired over the same evaluation problems: this round's policy against the start's
            for key, col in (("pass_at_1", 0), ("pass_at_max_k", -1)):
                diff = base["coverage"][:, col] - start["coverage"][:, col]
                lo, hi = bootstrap_ci(diff)
                row.update({f"{key}_minus_start": float(diff.mean()), f"{key}_minus_start_ci_low": lo,
                            f"{key}_minus_start_ci_high": hi})
            for rule, matrix in base.items():
                summary = vs.curve_summary(matrix, ks)
                curves += [{"arm": arm, "round": r, "rule": rule, **rec} for rec in summary.to_dict("records")]
            cov, maj = vs.curve_summary(base["coverage"], ks), vs.curve_summary(base["majority"], ks)
            row.update(pass_at_1=float(cov.accuracy.iloc[0]), pass_at_1_ci_low=float(cov.ci_low.iloc[0]),
                       pass_at_1_ci_high=float(cov.ci_high.iloc[0]), pass_at_max_k=float(cov.accuracy.iloc[-1]),
                       pass_at_max_k_ci_low=float(cov.ci_low.iloc[-1]),
                       pass_at_max_k_ci_high=float(cov.ci_high.iloc[-1]),
                       majority_at_max_k=float(maj.accuracy.iloc[-1]), majority_ci_low=float(maj.ci_low.iloc[-1]),
                       majority_ci_high=float(maj.ci_high.iloc[-1]),
                       distinct_answers=float(np.mean([len({a for a in answers[sp.problem.id] if a is not None})
                                                       for sp in stored])),
                       malformed_share=float(np.mean([a is None for sp in stored for a in answers[sp.problem.id]])))
            if r == 0:
                row.update(training_flops=json.loads((policy_dir(grid, out, arm, 0) / "training.json").read_text())
                           .get("training_flops"))
            else:
                rdir = out / "arms" / arm / f"round-{r}"
                samples = read_rows(rdir / "samples.jsonl")
                keep = kept(samples, int(grid["keep_per_problem"]))
                training = json.loads((rdir / "policy" / "training.json").read_text())
                row.update(sampled=len(samples), sampled_correct_share=float(np.mean([s["correct"] for s in samples])),
                           accepted=sum(s["accepted"] for s in samples), kept=len(keep),
                           kept_problems=len({k["problem_id"] for k in keep}),
                           kept_wrong_share=float(np.mean([not k["correct"] for k in keep])) if keep else None,
                           verifier_tpr=_rate(samples, True), verifier_fpr=_rate(samples, False),
                           finetune_tokens=training["finetune_tokens"], training_flops=training["training_flops"])
            rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "rounds.csv", index=False)
    curves = pd.DataFrame(curves)
    curves.to_parquet(out / "curves.parquet", index=False)
    return write_report(out, grid, table, curves)


def _rate(samples: list[dict], correct: bool) -> float | None:
    """The share accepted among the right (TPR) or the wrong (FPR) samples."""
    part = [s["accepted"] for s in samples if s["correct"] == correct]
    return float(sum(part) / len(part)) if part else None


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m search.expert_iteration", description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="default", help="a grid in conf/expert/ (default, small) or a YAML path")
    ap.add_argument("--out", type=Path, default=None, help="study directory (default: multirun/expert_<grid>)")
    args = ap.parse_args(argv)
    with exit_on_lab_error():
        grid = load_grid(args.grid)
        out = args.out or Path("multirun") / f"expert_{Path(args.grid).stem}"
        report = study(grid, out)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
