"""Pools from elsewhere: a documented file format for graded sample pools, its reader and writer, the converter from
a finished run directory, and the run directory an imported file becomes.

The format (docs/compute-allocation.md has it with examples) comes in two shapes:

- **JSONL**, one problem per line::

      {"problem_id": "p1", "prompt_tokens": 40, "metadata": {"n_ops": 3},
       "samples": [{"answer": "12", "correct": true, "completion_tokens": 31, "scores": {"prm": 0.8}}, ...]}

  ``problem_id`` (string), ``samples`` (non-empty list) with ``answer`` (string or null for no final answer),
  ``correct`` (bool) and ``completion_tokens`` (int >= 0) per sample are required. ``prompt_tokens`` (int >= 0,
  default 0), ``metadata`` (object) and per-sample ``scores`` (verifier name -> float in [0, 1]) are optional; when
  scores appear, every sample of the file must carry the same verifier names. An optional first line
  ``{"lab_pools": 1, "policy_params": N, "verifier_params": {"prm": M}, "source": "..."}`` gives the parameter counts
  that turn tokens into FLOPs (0, i.e. FLOPs unknown, without it).
- **Parquet** (or CSV), one row per sample: columns ``problem_id``, ``answer``, ``correct``, ``completion_tokens``,
  optional ``prompt_tokens`` and one ``score:NAME`` column per verifier. Samples keep the file's row order.

Correctness must be a function of the answer within a problem (two samples with the same answer cannot be graded
differently), as the estimators require. A malformed file raises ``LabError`` naming the file, the line (or row) and
the fix.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from search.contracts import LabError

FORMAT_VERSION = 1
"""The version a header line's ``lab_pools`` field names."""
SCORE_PREFIX = "score:"
"""Prefix of a verifier's score column in the Parquet/CSV shape."""


@dataclass
class PoolProblem:
    """One problem's graded pool of samples, in the order they were drawn."""

    problem_id: str
    """Identifier, unique within a pool set."""
    answers: list[str | None]
    """Each sample's extracted final answer (None: the sample has no well-formed answer)."""
    correct: list[bool]
    """Each sample's grade."""
    completion_tokens: list[int]
    """Tokens each sample generated."""
    prompt_tokens: int = 0
    """Tokens of the prompt (charged once per request)."""
    scores: dict[str, list[float]] = field(default_factory=dict)
    """Verifier name -> one score in [0, 1] per sample."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Facts about the problem (difficulty knobs, source); copied through unchanged."""

    @property
    def n(self) -> int:
        """Pool size."""
        return len(self.answers)

    @property
    def pass_rate(self) -> float:
        """Share of correct samples (the oracle difficulty)."""
        return sum(self.correct) / self.n


@dataclass
class PoolSet:
    """Every problem's pool plus what turns tokens into FLOPs."""

    problems: list[PoolProblem]
    """The pools, in file (or evaluation) order."""
    policy_params: int = 0
    """Parameters of the policy that drew the samples (0: unknown)."""
    verifier_params: dict[str, int] = field(default_factory=dict)
    """Parameters of each verifier (missing: 0, unknown)."""
    source: str = ""
    """Where the pools came from (a file or run directories)."""

    @property
    def verifiers(self) -> list[str]:
        """The verifier names every problem has scores from."""
        return list(self.problems[0].scores) if self.problems else []


def _where(path: Path, line: int | None, pid: str | None = None) -> str:
    at = f"{path}:{line}" if line is not None else str(path)
    return at + (f" (problem {pid})" if pid is not None else "")


def _check_problem(p: PoolProblem, where: str, verifiers: list[str] | None) -> None:
    if not p.answers:
        raise LabError(f"{where}: the pool has no samples: give at least one sample per problem, or drop the problem")
    seen: dict[str, bool] = {}
    for i, (a, ok) in enumerate(zip(p.answers, p.correct)):
        if a is not None and seen.setdefault(a, ok) != ok:
            raise LabError(f"{where}: sample {i} grades answer {a!r} {'right' if ok else 'wrong'} but an earlier "
                           f"sample graded it the other way: correctness must depend on the answer only; fix the "
                           f"grades")
    for i, t in enumerate(p.completion_tokens):
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise LabError(f"{where}: sample {i} has completion_tokens={t!r}: give a whole number >= 0")
    if isinstance(p.prompt_tokens, bool) or not isinstance(p.prompt_tokens, int) or p.prompt_tokens < 0:
        raise LabError(f"{where}: prompt_tokens={p.prompt_tokens!r}: give a whole number >= 0 (or leave it out)")
    if verifiers is not None and sorted(p.scores) != sorted(verifiers):
        raise LabError(f"{where}: scores from verifiers {sorted(p.scores)} but the first problem has "
                       f"{sorted(verifiers)}: every sample needs a score from the same verifiers")
    for name, values in p.scores.items():
        for i, s in enumerate(values):
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 <= s <= 1:
                raise LabError(f"{where}: sample {i} has score {s!r} from verifier {name!r}: scores must be numbers "
                               f"in [0, 1] (rescale them, e.g. a sigmoid of a logit)")


def _sample_fields(sample: Any, i: int, where: str) -> tuple:
    if not isinstance(sample, dict):
        raise LabError(f"{where}: sample {i} is {type(sample).__name__}, not an object: write each sample as "
                       f'{{"answer": ..., "correct": ..., "completion_tokens": ...}}')
    for key in ("answer", "correct", "completion_tokens"):
        if key not in sample:
            raise LabError(f"{where}: sample {i} has no {key!r} field (fields here: {', '.join(sample) or 'none'}); "
                           f"every sample needs answer, correct and completion_tokens")
    answer, ok = sample["answer"], sample["correct"]
    if answer is not None and not isinstance(answer, str):
        answer = str(answer)
    if not isinstance(ok, bool):
        raise LabError(f"{where}: sample {i} has correct={ok!r}: give true or false")
    scores = sample.get("scores", {})
    if not isinstance(scores, dict):
        raise LabError(f"{where}: sample {i} has scores={scores!r}: give an object of verifier name -> score")
    return answer, ok, sample["completion_tokens"], scores


def _problem_from_json(obj: Any, where: str) -> PoolProblem:
    if not isinstance(obj, dict):
        raise LabError(f"{where}: a line must be one JSON object per problem, got {type(obj).__name__}")
    for key in ("problem_id", "samples"):
        if key not in obj:
            raise LabError(f"{where}: no {key!r} field (fields here: {', '.join(obj) or 'none'}); each line needs "
                           f"problem_id and samples")
    pid, samples = str(obj["problem_id"]), obj["samples"]
    where = f"{where} (problem {pid})"
    if not isinstance(samples, list):
        raise LabError(f"{where}: samples must be a list of sample objects, got {type(samples).__name__}")
    fields = [_sample_fields(s, i, where) for i, s in enumerate(samples)]
    names = list(fields[0][3]) if fields else []
    scores: dict[str, list] = {name: [] for name in names}
    for i, f in enumerate(fields):
        if sorted(f[3]) != sorted(names):
            raise LabError(f"{where}: sample {i} has scores from {sorted(f[3])} but sample 0 from {sorted(names)}: "
                           f"every sample needs a score from the same verifiers")
        for name in names:
            scores[name].append(f[3][name])
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise LabError(f"{where}: metadata must be an object, got {type(metadata).__name__}")
    return PoolProblem(pid, [f[0] for f in fields], [f[1] for f in fields], [f[2] for f in fields],
                       obj.get("prompt_tokens", 0), scores, dict(metadata))


def _header(obj: dict, where: str) -> tuple[int, dict[str, int], str]:
    if obj.get("lab_pools") != FORMAT_VERSION:
        raise LabError(f"{where}: header says lab_pools={obj.get('lab_pools')!r}; this lab reads version "
                       f"{FORMAT_VERSION}: write lab_pools: {FORMAT_VERSION}")
    params = obj.get("policy_params", 0)
    vparams = obj.get("verifier_params", {})
    if not isinstance(params, int) or params < 0 or not isinstance(vparams, dict):
        raise LabError(f"{where}: policy_params must be a whole number >= 0 and verifier_params an object of name "
                       f"-> whole number")
    return params, {str(k): int(v) for k, v in vparams.items()}, str(obj.get("source", ""))


def read_jsonl(path: Path) -> PoolSet:
    """Read the JSONL shape; raises LabError (file, line, fix) on the first malformed line."""
    problems: list[PoolProblem] = []
    params, vparams, source = 0, {}, str(path)
    ids: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = _where(path, no)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise LabError(f"{where}: not valid JSON ({err.msg} at column {err.colno}): write one JSON object "
                               f"per line") from None
            if isinstance(obj, dict) and "lab_pools" in obj:
                if problems:
                    raise LabError(f"{where}: a header line (lab_pools) after problem lines: put it first")
                params, vparams, source = _header(obj, where)
                source = source or str(path)
                continue
            p = _problem_from_json(obj, where)
            if p.problem_id in ids:
                raise LabError(f"{where}: problem {p.problem_id} already appeared on line {ids[p.problem_id]}: give "
                               f"each problem one line with all its samples")
            ids[p.problem_id] = no
            _check_problem(p, f"{where} (problem {p.problem_id})", list(problems[0].scores) if problems else None)
            problems.append(p)
    if not problems:
        raise LabError(f"{path} holds no problem: write one JSON object per problem (see docs/compute-allocation.md)")
    return PoolSet(problems, params, vparams, source)


def read_table(path: Path) -> PoolSet:
    """Read the one-row-per-sample shape (Parquet, or CSV by suffix); raises LabError on a malformed row."""
    import pandas as pd

    try:
        df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is the same user mistake
        raise LabError(f"{path} cannot be read as {'CSV' if path.suffix == '.csv' else 'Parquet'} "
                       f"({type(err).__name__}): write a Parquet file with one row per sample") from None
    missing = [c for c in ("problem_id", "answer", "correct", "completion_tokens") if c not in df.columns]
    if missing:
        raise LabError(f"{path}: no column {missing[0]!r} (columns here: {', '.join(map(str, df.columns))}); give "
                       f"problem_id, answer, correct, completion_tokens and optional score:NAME columns")
    names = [c[len(SCORE_PREFIX):] for c in df.columns if str(c).startswith(SCORE_PREFIX)]
    problems: dict[str, PoolProblem] = {}
    for row_no, row in enumerate(df.to_dict("records"), 2 if path.suffix == ".csv" else 0):
        pid = str(row["problem_id"])
        where = _where(path, row_no) if path.suffix == ".csv" else f"{path} row {row_no}"
        ok = row["correct"]
        if isinstance(ok, str) and ok.lower() in ("true", "false"):
            ok = ok.lower() == "true"
        if not isinstance(ok, bool):
            raise LabError(f"{where} (problem {pid}): correct={ok!r}: give true or false")
        tokens = row["completion_tokens"]
        if isinstance(tokens, float) and tokens.is_integer():    # CSV reads an int column with a gap as floats
            tokens = int(tokens)
        answer = row["answer"]
        answer = None if answer is None or (isinstance(answer, float) and math.isnan(answer)) else str(answer)
        p = problems.setdefault(pid, PoolProblem(pid, [], [], [], 0, {n: [] for n in names}))
        p.answers.append(answer)
        p.correct.append(bool(ok))
        p.completion_tokens.append(tokens)
        if "prompt_tokens" in row and row["prompt_tokens"] == row["prompt_tokens"]:
            p.prompt_tokens = int(row["prompt_tokens"])
        for n in names:
            p.scores[n].append(float(row[SCORE_PREFIX + n]))
    out = list(problems.values())
    if not out:
        raise LabError(f"{path} has no rows: write one row per sample")
    for p in out:
        _check_problem(p, f"{path} (problem {p.problem_id})", names)
    return PoolSet(out, 0, {}, str(path))


def read_pools(path: Path) -> PoolSet:
    """A pool file in either shape (by suffix: .jsonl/.json, .parquet, .csv)."""
    path = Path(path)
    if not path.exists():
        raise LabError(f"{path} does not exist: give a pool file (.jsonl or .parquet) or a run directory")
    if path.suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    if path.suffix in (".parquet", ".csv"):
        return read_table(path)
    raise LabError(f"{path}: unknown pool file type {path.suffix!r}: use .jsonl, .parquet or .csv")


def write_jsonl(pools: PoolSet, path: Path) -> None:
    """Write a pool set in the JSONL shape (with its header line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"lab_pools": FORMAT_VERSION, "policy_params": pools.policy_params,
                             "verifier_params": pools.verifier_params, "source": pools.source}) + "\n")
        for p in pools.problems:
            samples = [{"answer": a, "correct": bool(c), "completion_tokens": int(t),
                        **({"scores": {n: float(p.scores[n][i]) for n in p.scores}} if p.scores else {})}
                       for i, (a, c, t) in enumerate(zip(p.answers, p.correct, p.completion_tokens))]
            fh.write(json.dumps({"problem_id": p.problem_id, "prompt_tokens": p.prompt_tokens,
                                 "metadata": p.metadata, "samples": samples}, separators=(",", ":")) + "\n")


def _verifier_name(summary: dict) -> str:
    name = summary.get("verifier", "verifier")
    return name


def pools_from_runs(run_dirs: Iterable[Path]) -> PoolSet:
    """The pools of finished best-of-k runs (their records' ``pool`` field). Several runs on the same pools (same
    problems, same answers: a re-scoring with another verifier or noise) merge into one set with a score column per
    run's verifier; runs on different pools are refused."""
    from search.engine.records import RecordFile

    merged: dict[str, PoolProblem] = {}
    order: list[str] = []
    params, vparams, sources = 0, {}, []
    for i, run_dir in enumerate(map(Path, run_dirs)):
        path = run_dir / "records.jsonl"
        if not path.exists():
            raise LabError(f"{run_dir} has no records.jsonl: give the directory of a finished run (lab run ... "
                           f"hydra.run.dir=DIR) or a pool file")
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
        name = _verifier_name(summary) if summary else run_dir.name
        if name in vparams:
            name = f"{name}@{run_dir.name}"
        sources.append(str(run_dir))
        records = RecordFile(path).records
        if not records:
            raise LabError(f"{path} has no finished problem: let the run finish")
        ledger = records[0].get("ledger", {})
        params = params or int(summary.get("policy_params") or ledger.get("policy_params") or 0)
        vparams[name] = int(ledger.get("verifier_params") or 0)
        for rec in records:
            pool = rec.get("pool")
            if not pool or not pool.get("answer"):
                raise LabError(f"{path} (problem {rec.get('problem_id')}): the record keeps no pool: convert a "
                               f"best-of-k run (strategy=best_of_k), whose records keep every sample")
            pid = rec["problem_id"]
            requests = max(1, rec.get("ledger", {}).get("policy_requests", 1))
            if i == 0:
                merged[pid] = PoolProblem(pid, list(pool["answer"]), [bool(c) for c in pool["correct"]],
                                          [int(t) for t in pool["completion_tokens"]],
                                          int(rec.get("ledger", {}).get("prompt_tokens", 0)) // requests, {},
                                          dict(rec.get("metadata", {})))
                order.append(pid)
            elif pid not in merged or merged[pid].answers != list(pool["answer"]):
                raise LabError(f"{run_dir} (problem {pid}) holds other samples than {sources[0]}: merge only runs "
                               f"that re-score the same pools (same policy, seed and budget)")
            merged[pid].scores[name] = [float(s) for s in pool["score"]]
        if i and len({pid for pid in merged if name in merged[pid].scores}) != len(merged):
            raise LabError(f"{run_dir} lacks problems that {sources[0]} has: let it finish, or merge runs with "
                           f"the same problems")
    problems = [merged[pid] for pid in order]
    for p in problems:
        _check_problem(p, f"problem {p.problem_id}", list(problems[0].scores))
    return PoolSet(problems, params, vparams, " + ".join(sources))


def load(sources: Iterable[Path]) -> PoolSet:
    """Pools from one pool file, or from one or more run directories (merged)."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise LabError("no pools given: name a pool file (.jsonl/.parquet) or one or more run directories")
    if all(s.is_dir() for s in sources):
        return pools_from_runs(sources)
    if len(sources) == 1:
        return read_pools(sources[0])
    raise LabError(f"give one pool file, or only run directories (got {', '.join(map(str, sources))})")


def budgets_for(n: int) -> list[int]:
    """Powers of two up to a pool of n, and n itself."""
    ks = [2**i for i in range(n.bit_length())]
    return ks + ([n] if ks[-1] != n else [])


def write_run_dir(pools: PoolSet, out_dir: Path, verifier: str | None = None, resamples: int = 1000,
                  seed: int = 0, weighted_draws: int = 2000) -> dict:
    """Write a pool set as the run directory a best-of-k run would have written (records.jsonl with every budget
    evaluated, summary.json with the per-budget table), so ``lab plot``, ``lab collect`` and ``lab report`` read it
    as if the lab had generated the pools. ``verifier`` picks whose scores the argmax and vote rules use (default
    the first; with none, every sample scores 0 and argmax is a uniform pick). Returns the summary."""
    from search.analysis.pool import evaluate_pool
    from search.analysis.summaries import policy_profile, summarize_budgets
    from search.engine.records import write_json_atomic
    from search.seeding import derive_seed

    names = pools.verifiers
    if verifier is not None and verifier not in names:
        raise LabError(f"no scores from verifier {verifier!r} in {pools.source}: choose one of "
                       f"{', '.join(names) or '(none: the file has no scores; leave --verifier out)'}")
    verifier = verifier or (names[0] if names else None)
    n_min = min(p.n for p in pools.problems)
    ks = budgets_for(n_min)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LabError(f"cannot write {out_dir} ({err.strerror}): choose another with --out") from None
    if (out_dir / "records.jsonl").exists():
        raise LabError(f"{out_dir} already holds records.jsonl: import into a new directory (--out)")
    vparams = pools.verifier_params.get(verifier, 0) if verifier else 0
    records = []
    with open(out_dir / "records.jsonl", "w", encoding="utf-8") as fh:
        for p in pools.problems:
            scores = p.scores[verifier] if verifier else [0.0] * p.n
            best = max(range(p.n), key=lambda i: scores[i])
            by_k = evaluate_pool(p.answers, p.correct, scores, ks, prompt_tokens=p.prompt_tokens,
                                 completion_tokens=p.completion_tokens, verifier_tokens=0,
                                 policy_params=pools.policy_params, verifier_params=vparams,
                                 weighted_draws=weighted_draws, seed=derive_seed(seed, "weighted", p.problem_id))
            rec = {"problem_id": p.problem_id, "metadata": p.metadata, "reference": None,
                   "answer": p.answers[best], "correct": bool(p.correct[best]), "n_samples": p.n,
                   "pool_accuracy": p.pass_rate,
                   "pool": {"text": [None] * p.n, "answer": p.answers, "correct": p.correct, "score": scores,
                            "completion_tokens": p.completion_tokens, "finish_reason": [None] * p.n},
                   "ledger": {"policy_requests": 1, "samples": p.n, "prompt_tokens": p.prompt_tokens,
                              "completion_tokens": sum(p.completion_tokens), "policy_params": pools.policy_params},
                   "extras": {"imported_from": pools.source}, "by_k": by_k, "wall_s": 0.0}
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            records.append(rec)
    config = {"task": {"_target_": "imported"}, "strategy": {"_target_": "imported", "budget": n_min, "seed": None},
              "verifier": {"_target_": "imported", "name": verifier}, "seed": seed, "source": pools.source}
    summary = {
        "config": config, "overrides": [], "task": f"imported:{Path(pools.source.split(' + ')[0]).name}",
        "strategy": "best_of_k", "strategy_kind": "pool", "verifier": verifier or "none",
        "verifier_base": verifier or "none", "verifier_kind": "outcome", "noise": {"noise": "none"}, "fp_cost": 0.0,
        "policy_model_id": "imported", "policy_params": pools.policy_params, "n_problems": len(records),
        "strategy_accuracy": sum(r["correct"] for r in records) / len(records),
        "generation_requests": 0, "generated_tokens": 0, "cache_hits": 0, "imported_from": pools.source,
        "policy_profile": policy_profile(records),
        "budgets": summarize_budgets(records, resamples=resamples, seed=seed),
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary
