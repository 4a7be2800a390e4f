"""Spending compute well, from existing pools: the compute-optimal strategy per difficulty bin, adaptive budgets
across problems, and the early-stopping summary at matched compute.

Compute is counted in samples per problem (every sample costs the same policy tokens in expectation; a verifier's
scoring cost per sample is the same for every verifier rule). A strategy is a rule and a budget k: plurality vote
(``majority``) or best-of-k by a verifier's score (``argmax:NAME``), each evaluated exactly over the k-subsets of the
pool (ESTIMATORS.md).

Difficulty comes from a signal: ``oracle`` (the pool's pass rate, which no one has at test time), ``agreement`` (the
share of the modal answer among the first ``m`` samples) or ``score:NAME`` (a verifier's mean score over the first
``m`` samples). A test-time signal costs its ``m`` samples, charged to every problem; the strategies are evaluated on
the pool without those samples, so the signal and the outcome are measured on different samples, as they would be.
Bins are quantiles of the signal on the half of the problems used for choosing (train); the choice (rule and k per
bin) is made there and evaluated on the other half (test). Every figure is the mean over ``splits`` random halvings;
its interval is the percentile interval over replicates that each draw a new halving and resample the test problems
with replacement (so it covers both the choice and the evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from search.analysis import estimators


@dataclass
class Strategies:
    """Per-problem accuracy of every (rule, k) on the pools without their signal samples."""

    rules: list[str]
    """Rule names: ``majority`` and ``argmax:NAME`` per verifier."""
    ks: list[int]
    """The budgets k evaluated (samples per problem)."""
    acc: np.ndarray
    """(problems, rules, ks) exact subset-average accuracy."""
    fallback: np.ndarray
    """(problems,) accuracy of the plurality of the signal samples alone (what giving up on a problem answers;
    0 without signal samples)."""
    m: int
    """Signal samples per problem held out (and charged) for a test-time signal; 0 for the oracle."""


def grid(n: int) -> list[int]:
    """Powers of two below n, and n."""
    ks = [2**i for i in range(n.bit_length()) if 2**i < n]
    return ks + [n]


def strategies(problems: Sequence, verifiers: Sequence[str], m: int = 0, extra_ks: Sequence[int] = (),
               weighted_draws: int = 0) -> Strategies:
    """Every rule at every k of ``grid(n - m)`` and ``extra_ks``, on each pool's samples after its first ``m``:
    majority, argmax per verifier and, with ``weighted_draws`` > 0, the vote weighted by each verifier's scores
    (Monte Carlo over that many k-subsets per k)."""
    n = min(len(p.answers) for p in problems) - m
    if n < 1:
        raise ValueError(f"pools of {n + m} samples leave none after {m} signal samples: lower m")
    ks = sorted(set(grid(n)) | {int(k) for k in extra_ks if 1 <= k <= n})
    rules = (["majority"] + [f"argmax:{v}" for v in verifiers]
             + ([f"weighted:{v}" for v in verifiers] if weighted_draws else []))
    acc = np.zeros((len(problems), len(rules), len(ks)))
    fallback = np.zeros(len(problems))
    for i, p in enumerate(problems):
        answers, correct = list(p.answers[m:m + n]), list(p.correct[m:m + n])
        acc[i, 0] = estimators.majority_curve(answers, correct, ks)
        for j, v in enumerate(verifiers, 1):
            acc[i, j] = estimators.best_of_k_curve(p.scores[v][m:m + n], [float(c) for c in correct], ks)
            if weighted_draws:      # no closed form: Monte Carlo over k-subsets, seeded per problem
                acc[i, j + len(verifiers)] = estimators.weighted_vote_curve(
                    answers, p.scores[v][m:m + n], correct, ks, n_draws=weighted_draws, seed=i)[0]
        if m:
            fallback[i] = estimators.majority_at_k(list(p.answers[:m]), list(p.correct[:m]), m)
    return Strategies(rules, ks, acc, fallback, m)


def signal(problems: Sequence, kind: str, m: int) -> np.ndarray:
    """Each problem's difficulty signal (higher = easier): ``oracle``, ``agreement`` or ``score:NAME``."""
    if kind == "oracle":
        return np.array([sum(p.correct) / len(p.correct) for p in problems])
    if m < 1:
        raise ValueError(f"signal {kind} needs m >= 1 samples")
    if kind == "agreement":
        out = []
        for p in problems:
            votes = [a for a in p.answers[:m] if a is not None]
            out.append(max(votes.count(a) for a in set(votes)) / m if votes else 0.0)
        return np.array(out)
    if kind.startswith("score:"):
        name = kind[len("score:"):]
        return np.array([float(np.mean(p.scores[name][:m])) for p in problems])
    raise ValueError(f"unknown signal {kind!r}: oracle, agreement or score:NAME")


def bins_of(train_signal: np.ndarray, signal_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each value (0 = hardest), from quantile edges of the train half's signal. Tied quantiles merge
    (a discrete signal can give fewer bins)."""
    edges = np.unique(np.quantile(train_signal, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, signal_values, side="right")


def _best(acc_train: np.ndarray, ks: np.ndarray, budget: float) -> tuple[int, int]:
    """(rule, k index) of the highest mean train accuracy among k <= budget (the smaller k on a tie)."""
    allowed = ks <= budget + 1e-9
    means = np.where(allowed[None, :], acc_train.mean(axis=0), -np.inf)
    flat = int(np.argmax(means.T.ravel()))          # k-major: a tie goes to the smaller k
    ki, ri = divmod(flat, means.shape[0])
    return ri, ki


def compute_optimal(S: Strategies, sig: np.ndarray, train: np.ndarray, test: np.ndarray, budget: float,
                    n_bins: int) -> tuple[float, float]:
    """Test accuracy and mean samples spent when each train bin picks its best (rule, k <= budget - m)."""
    ks = np.array(S.ks)
    b_train, b_test = bins_of(sig[train], sig[train], n_bins), bins_of(sig[train], sig[test], n_bins)
    glob = _best(S.acc[train], ks, budget - S.m)
    acc, spent = np.zeros(len(test)), np.zeros(len(test))
    for b in np.unique(b_test):
        rows = train[b_train == b]
        r, k = _best(S.acc[rows], ks, budget - S.m) if len(rows) else glob
        sel = b_test == b
        acc[sel], spent[sel] = S.acc[test[sel], r, k], ks[k] + S.m
    return float(acc.mean()), float(spent.mean())


def single_best(S: Strategies, train: np.ndarray, test: np.ndarray, budget: float) -> float:
    """Test accuracy of the one (rule, k <= budget) best on the train half, for every problem."""
    r, k = _best(S.acc[train], np.array(S.ks), budget)
    return float(S.acc[test, r, k].mean())


def matching_budget(ks: Sequence[int], curve: np.ndarray, target: float) -> float:
    """The smallest budget at which ``curve`` (accuracy at each k, linear in log2 k between them) reaches
    ``target``; NaN when it never does."""
    ks, curve = np.asarray(ks, dtype=float), np.asarray(curve, dtype=float)
    if curve[0] >= target:
        return float(ks[0])
    for i in range(1, len(ks)):
        if curve[i] >= target:
            f = (target - curve[i - 1]) / (curve[i] - curve[i - 1])
            return float(2 ** (np.log2(ks[i - 1]) + f * (np.log2(ks[i]) - np.log2(ks[i - 1]))))
    return float("nan")


def allocate_budget(S: Strategies, sig: np.ndarray, train: np.ndarray, test: np.ndarray, budget: float,
                    n_bins: int, give_up: bool = True) -> tuple[float, float, list[int]]:
    """Adaptive budgets across problems: the per-bin (rule, k) with the best train accuracy whose mean samples
    over the train problems stay within ``budget`` (signal samples included), k = 0 (give up: answer the signal
    samples' plurality) allowed when ``give_up``. Returns test accuracy, test mean samples and the k per bin."""
    ks = np.array(S.ks)
    b_train, b_test = bins_of(sig[train], sig[train], n_bins), bins_of(sig[train], sig[test], n_bins)
    bins = np.unique(np.r_[b_train, b_test])
    options = []        # per bin: (k, train accuracy sum, rule) for each allowed k
    for b in bins:
        rows = train[b_train == b]
        opts = [(0, float(S.fallback[rows].sum()), -1)] if give_up else []
        for ki, k in enumerate(ks):
            if len(rows):
                means = S.acc[rows][:, :, ki].sum(axis=0)
                r = int(np.argmax(means))
                opts.append((int(k), float(means[r]), r))
            else:
                opts.append((int(k), 0.0, 0))
        options.append((b, len(rows), opts))
    # every combination of one option per bin at once: cost and value broadcast over a (options,)*bins grid
    shape = [len(o[2]) for o in options]
    cost = np.full(shape, float(S.m))
    val = np.zeros(shape)
    for i, (_, n, opts) in enumerate(options):
        axis = [1] * len(options)
        axis[i] = len(opts)
        cost = cost + (np.array([o[0] for o in opts], dtype=float) * n / len(train)).reshape(axis)
        val = val + np.array([o[1] for o in opts]).reshape(axis)
    val = np.where(cost <= budget + 1e-9, val, -np.inf)
    if not np.isfinite(val).any():
        return float("nan"), float("nan"), []
    # the best value, and among equal values the cheapest (C order: earlier options are smaller k)
    best = np.unravel_index(int(np.argmax(np.where(val >= val.max() - 1e-9, -cost, -np.inf))), shape)
    acc, spent = np.zeros(len(test)), np.zeros(len(test))
    for (b, _, opts), c in zip(options, best):
        k, _, r = opts[c]
        sel = b_test == b
        acc[sel] = S.fallback[test[sel]] if k == 0 else S.acc[test[sel], r, list(ks).index(k)]
        spent[sel] = k + S.m
    return float(acc.mean()), float(spent.mean()), [opts[c][0] for (_, _, opts), c in zip(options, best)]


@dataclass
class Settings:
    """The knobs of the allocation analysis."""

    m: int = 4
    """Signal samples per problem for a test-time signal."""
    n_bins: int = 4
    """Difficulty bins (quantiles of the train half's signal)."""
    splits: int = 50
    """Random halvings averaged for every point estimate."""
    replicates: int = 400
    """Halvings with a bootstrap of the test half, for the intervals."""
    seed: int = 0
    """Seed of the halvings and bootstraps."""
    weighted_draws: int = 0
    """k-subsets per k for the weighted-vote rules (Monte Carlo); 0 leaves those rules out."""


def _halves(P: int, rng: np.random.Generator, boot: bool) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(P)
    train, test = np.sort(perm[:P // 2]), np.sort(perm[P // 2:])
    if boot:
        test = rng.choice(test, size=len(test), replace=True)
    return train, test


def analyse(problems: Sequence, verifiers: Sequence[str], bon_verifier: str, budgets: Sequence[int],
            settings: Settings = Settings()) -> dict:
    """The compute-optimal curve per signal, the best single strategy, best-of-N and majority at each per-problem
    budget; the compute ratio at which best-of-N matches each compute-optimal point; adaptive budgets against
    uniform. Every figure as {"mean": over splits, "lo", "hi": over bootstrap replicates}."""
    P = len(problems)
    if P < 8:
        raise ValueError(f"{P} problems are too few to halve into bins: give at least 8")
    signals = ["oracle"] + (["agreement"] + [f"score:{v}" for v in verifiers] if settings.m else [])
    n = min(len(p.answers) for p in problems)
    if any(B not in grid(n) for B in budgets):
        raise ValueError(f"budgets {list(budgets)} must be powers of two up to the pool size {n} (or {n})")
    # the signal's samples are charged, so a test-time strategy at budget B may spend B - m more
    S0 = strategies(problems, verifiers, 0, weighted_draws=settings.weighted_draws)
    Sm = strategies(problems, verifiers, settings.m, [B - settings.m for B in budgets], settings.weighted_draws)
    sig = {s: signal(problems, s, settings.m) for s in signals}
    bon = S0.rules.index(f"argmax:{bon_verifier}")
    rows: dict[str, list] = {}

    def one(train, test) -> dict[str, float]:
        out = {}
        bon_curve = S0.acc[test, bon].mean(axis=0)
        for k in S0.ks:
            out[f"bon@{k}"] = float(S0.acc[test, bon, S0.ks.index(k)].mean())
        for B in budgets:
            out[f"majority@{B}"] = float(S0.acc[test, 0, S0.ks.index(B)].mean()) if B in S0.ks else np.nan
            out[f"single@{B}"] = single_best(S0, train, test, B)
            for s in signals:
                S = S0 if s == "oracle" else Sm
                if B <= S.m:
                    out[f"opt:{s}@{B}"] = out[f"opt:{s}@{B}:spent"] = out[f"ratio:{s}@{B}"] = np.nan
                    out[f"adaptive:{s}@{B}"] = out[f"adaptive:{s}@{B}:spent"] = np.nan
                    continue
                a, spent = compute_optimal(S, sig[s], train, test, B, settings.n_bins)
                out[f"opt:{s}@{B}"], out[f"opt:{s}@{B}:spent"] = a, spent
                out[f"ratio:{s}@{B}"] = matching_budget(S0.ks, bon_curve, a) / spent
                # paired on the same test problems: the difference has a much tighter interval than either level
                out[f"minus_bon:{s}@{B}"] = a - out[f"bon@{B}"] if f"bon@{B}" in out else np.nan
                a, spent, chosen = allocate_budget(S, sig[s], train, test, B, settings.n_bins)
                out[f"adaptive:{s}@{B}"], out[f"adaptive:{s}@{B}:spent"] = a, spent
                # a bin got k = 0: no further sample (settled by the signal's samples, or given up as hopeless)
                out[f"gave_up:{s}@{B}"] = float(0 in chosen)
                out[f"gain:{s}@{B}"] = a - out[f"single@{B}"]
        return out

    rng = np.random.default_rng(settings.seed)
    point = [one(*_halves(P, rng, False)) for _ in range(settings.splits)]
    reps = [one(*_halves(P, rng, True)) for _ in range(settings.replicates)]
    for key in point[0]:
        vals = np.array([p[key] for p in point], dtype=float)
        rv = np.array([r[key] for r in reps], dtype=float)
        if key.startswith("ratio:") and np.isfinite(rv).any():
            rv = np.where(np.isnan(rv), np.inf, rv)     # censored: best-of-N never matched it, the ratio is larger
        ok = rv[~np.isnan(rv)]
        rows[key] = {"mean": float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan"),
                     "lo": float(np.quantile(ok, 0.025, method="nearest")) if len(ok) else float("nan"),
                     "hi": float(np.quantile(ok, 0.975, method="nearest")) if len(ok) else float("nan"),
                     "censored": float(np.mean(np.isinf(rv))) if key.startswith("ratio") else 0.0}
    # the ratio's point estimate from the mean curves (a mean of per-split ratios would drop the censored splits)
    bon_curve = [rows[f"bon@{B}"]["mean"] if f"bon@{B}" in rows else np.nan for B in S0.ks]
    for key in [k for k in rows if k.startswith("ratio:")]:
        s, B = key[len("ratio:"):].rsplit("@", 1)
        opt, spent = rows[f"opt:{s}@{B}"]["mean"], rows[f"opt:{s}@{B}:spent"]["mean"]
        known = [(k, c) for k, c in zip(S0.ks, bon_curve) if np.isfinite(c)]
        rows[key]["mean"] = (matching_budget([k for k, _ in known], np.array([c for _, c in known]), opt) / spent
                             if np.isfinite(opt) else float("nan"))
        rows[key]["upper_bound_if_censored"] = float(max(S0.ks) / spent) if np.isfinite(opt) else float("nan")
    per_bin = best_per_bin(S0, sig["oracle"], settings.n_bins, budgets)
    return {"signals": signals, "budgets": list(budgets), "rules": S0.rules, "ks": S0.ks, "m": settings.m,
            "n_bins": settings.n_bins, "splits": settings.splits, "replicates": settings.replicates,
            "n_problems": P, "bon_verifier": bon_verifier, "figures": rows, "best_per_oracle_bin": per_bin,
            "signal_quality": {s: float(np.corrcoef(sig[s], sig["oracle"])[0, 1]) if np.std(sig[s]) > 0 else 0.0
                               for s in signals if s != "oracle"}}


def best_per_bin(S: Strategies, sig: np.ndarray, n_bins: int, budgets: Sequence[int]) -> list[dict]:
    """On all problems (descriptive, no split): each oracle bin's best (rule, k) at each budget, and every rule's
    accuracy at that budget, to show whether easy and hard problems want different strategies."""
    b = bins_of(sig, sig, n_bins)
    out = []
    for bin_ in np.unique(b):
        rows = np.flatnonzero(b == bin_)
        for B in budgets:
            r, k = _best(S.acc[rows], np.array(S.ks), B)
            ki = max(i for i, kk in enumerate(S.ks) if kk <= B)
            out.append({"bin": int(bin_), "pass_rate_lo": float(sig[rows].min()),
                        "pass_rate_hi": float(sig[rows].max()),
                        "n": int(len(rows)), "budget": int(B), "best_rule": S.rules[r], "best_k": int(S.ks[k]),
                        "best_accuracy": float(S.acc[rows, r, k].mean()),
                        **{f"{rule}@{S.ks[ki]}": float(S.acc[rows, j, ki].mean()) for j, rule in enumerate(S.rules)}})
    return out
