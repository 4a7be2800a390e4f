"""Early stopping within a problem, evaluated on an existing pool (no generation).

A stopping rule sees the samples of a problem one at a time and decides after each whether to stop; when it stops
(or reaches its cap of ``max_samples``) it answers. Its accuracy and the samples and tokens it used are averaged over
orderings of the pool: a random ordering's first ``max_samples`` samples are a random subset drawn in random order,
so the average over all orderings is the exact expectation for i.i.d. samples from the pool, as the subset estimators
of ESTIMATORS.md are. ``evaluate_orders`` runs a rule on given orderings; ``monte_carlo`` averages it over random
orderings (with its standard error); ``exact`` enumerates every ordering of a small pool.

The rules:

- ``fixed``: stop at ``max_samples`` and answer the plurality (fixed-k majority vote; equals ``majority_at_k``).
- ``adaptive``: Adaptive-Consistency's Beta criterion. With v1 and v2 the counts of the two leading answers, stop when
  P(p1 > p2) under the posterior Beta(v1 + 1, v2 + 1) reaches ``threshold``; that probability is
  P(Binomial(v1 + v2 + 1, 1/2) <= v1). Answer the plurality.
- ``esc``: Early-Stopping Self-Consistency: sample in windows of ``window`` samples; stop after a window whose
  samples all give the same answer; answer the plurality of everything drawn.
- ``confident``: stop at the first sample whose verifier score is at least ``threshold`` and answer it; at the cap,
  answer the best-scored sample seen (ties split). Rejection sampling with a cap, from a confidence signal.
- ``consensus``: DeepConf's online stop: vote weighted by verifier score; stop when the leading answer holds at least
  ``threshold`` of the weight seen (after ``min_samples``); answer the weighted plurality.

Ties between answers are split evenly (a correct answer tied with u others counts 1/(u+1)); samples with no answer
(None) do not vote; a rule that has no vote when it stops scores 0.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from search.analysis import estimators

KINDS = ("fixed", "adaptive", "esc", "confident", "consensus")
"""The stopping rules (see the module docstring)."""
SCORED = ("confident", "consensus")
"""The rules that need a verifier's scores."""


@dataclass(frozen=True)
class StopRule:
    """One stopping rule with its knob and cap."""

    kind: str
    """One of KINDS."""
    max_samples: int
    """The cap: the rule answers after this many samples whatever it has seen."""
    threshold: float = 0.0
    """adaptive: posterior probability to reach; confident: score to reach; consensus: weight share to reach."""
    window: int = 0
    """esc: samples per window."""
    min_samples: int = 1
    """The rule never stops before this many samples (adaptive, consensus)."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown stopping rule {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.max_samples < 1 or self.min_samples < 1:
            raise ValueError("max_samples and min_samples must be >= 1")
        if self.kind == "esc" and self.window < 1:
            raise ValueError("esc needs window >= 1")

    @property
    def label(self) -> str:
        """A short name for tables: kind and knob."""
        knob = {"fixed": f"k={self.max_samples}", "esc": f"w={self.window}"}.get(self.kind, f"t={self.threshold:g}")
        return f"{self.kind}({knob})"


def beta_stop_probability(v1, v2) -> np.ndarray:
    """P(p1 > p2) under Beta(v1 + 1, v2 + 1) for integer counts: P(Binomial(v1 + v2 + 1, 1/2) <= v1)."""
    v1, v2 = np.broadcast_arrays(np.asarray(v1, dtype=np.int64), np.asarray(v2, dtype=np.int64))
    n = v1 + v2 + 1
    top = int(n.max()) if n.size else 1
    # cdf[n, j] = P(Bin(n, 1/2) <= j), from log-binomials so large counts stay finite
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, top + 1)))])
    cdf = np.zeros((top + 1, top + 1))
    for m in range(top + 1):
        j = np.arange(m + 1)
        cdf[m, :m + 1] = np.cumsum(np.exp(lf[m] - lf[j] - lf[m - j] - m * math.log(2.0)))
        cdf[m, m + 1:] = 1.0
    return np.minimum(cdf[n, v1], 1.0)


def _encode(answers: Sequence, correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """``estimators._classes`` (class per sample, -1 for no answer; correctness per class), with a spare wrong
    class at the end that absorbs the samples without a vote."""
    cls, good = estimators._classes(answers, correct)
    return cls, np.append(good, False)


def _credit(weights: np.ndarray, good: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Share of the leading answers (ties split) that are correct; 0 where nothing voted."""
    w = weights[:, :-1]
    if w.shape[1] == 0:
        return np.zeros(len(weights))
    top = w.max(axis=1, keepdims=True)
    lead = (w >= top - tol) & (w > 0)
    n = lead.sum(axis=1)
    return np.where(n > 0, (lead & good[:-1]).sum(axis=1) / np.maximum(n, 1), 0.0)


def evaluate_orders(rule: StopRule, answers: Sequence, correct: Sequence[bool], orders: np.ndarray,
                    tokens: Sequence[int] | None = None, scores: Sequence[float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``rule`` on each ordering (a row of ``orders``: indices into the pool, at least ``max_samples`` long).

    Returns per ordering: the credit (1 correct, 0 wrong, a fraction for a split tie), the samples used, and the
    completion tokens used (the sum over the samples drawn; zeros without ``tokens``)."""
    if rule.kind in SCORED and scores is None:
        raise ValueError(f"rule {rule.kind} needs verifier scores")
    orders = np.asarray(orders, dtype=np.int64)
    K = rule.max_samples
    if orders.ndim != 2 or orders.shape[1] < K:
        raise ValueError(f"orders must be (orderings, >= {K}) indices into the pool")
    cls, good = _encode(answers, correct)
    m = len(good)
    R = orders.shape[0]
    c = cls[orders[:, :K]]
    c = np.where(c < 0, m - 1, c)
    tok = np.asarray(tokens if tokens is not None else np.zeros(len(answers)), dtype=float)[orders[:, :K]]
    sc = np.asarray(scores, dtype=float)[orders[:, :K]] if scores is not None else None
    rows = np.arange(R)
    counts = np.zeros((R, m))
    wsum = np.zeros((R, m))
    best = np.full(R, -np.inf)          # confident: best score seen and the credit of the samples holding it
    best_credit = np.zeros(R)
    best_n = np.zeros(R)
    done = np.zeros(R, dtype=bool)
    credit, used = np.zeros(R), np.zeros(R, dtype=np.int64)
    for t in range(1, K + 1):
        col = c[:, t - 1]
        counts[rows, col] += 1.0
        if sc is not None:
            wsum[rows, col] += sc[:, t - 1]
        live = ~done
        if rule.kind == "fixed":
            stop = np.full(R, t == K)
            answer = _credit(counts, good)
        elif rule.kind == "adaptive":
            top2 = -np.sort(-np.c_[counts[:, :-1], np.zeros((R, 2))], axis=1)[:, :2]   # padded: < 2 answers
            stop = (beta_stop_probability(top2[:, 0], top2[:, 1]) >= rule.threshold) & (t >= rule.min_samples)
            stop |= t == K
            answer = _credit(counts, good)
        elif rule.kind == "esc":
            if t % rule.window == 0:
                win = c[:, t - rule.window:t]
                stop = (win == win[:, :1]).all(axis=1) & (win[:, 0] != m - 1)
            else:
                stop = np.zeros(R, dtype=bool)
            stop |= t == K
            answer = _credit(counts, good)
        elif rule.kind == "confident":
            s = sc[:, t - 1]
            ok = good[col].astype(float)
            better, same = s > best, s == best
            best_credit = np.where(better, ok, np.where(same, best_credit + ok, best_credit))
            best_n = np.where(better, 1.0, np.where(same, best_n + 1.0, best_n))
            best = np.maximum(best, s)
            hit = s >= rule.threshold
            stop = hit | (t == K)
            answer = np.where(hit, ok, best_credit / np.maximum(best_n, 1.0))
        else:  # consensus
            total = wsum[:, :-1].sum(axis=1)
            lead = np.c_[wsum[:, :-1], np.zeros(R)].max(axis=1)       # padded: a pool with no answer at all
            share = np.where(total > 0, lead / np.where(total > 0, total, 1.0), 0.0)
            stop = ((share >= rule.threshold) & (total > 0) & (t >= rule.min_samples)) | (t == K)
            # with all weights zero the weighted vote has no information: fall back to the plain plurality
            answer = np.where(total > 0, _credit(wsum, good), _credit(counts, good))
        now = live & stop
        credit[now], used[now] = answer[now], t
        done |= now
        if done.all():
            break
    tok_used = np.where(np.arange(K)[None, :] < used[:, None], tok, 0.0).sum(axis=1)
    return credit, used.astype(float), tok_used


def random_orders(n: int, max_samples: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` random orderings of a pool of n, each cut to its first ``max_samples``."""
    keys = rng.random((draws, n))
    return np.argsort(keys, axis=1)[:, :max_samples]


def monte_carlo(rule: StopRule, answers, correct, tokens=None, scores=None, draws: int = 500,
                seed: int = 0) -> dict[str, float]:
    """The rule's expected credit, samples and tokens over ``draws`` random orderings of the pool, with the
    standard error of the credit's mean (``credit_se``)."""
    n = len(answers)
    if rule.max_samples > n:
        raise ValueError(f"max_samples={rule.max_samples} is larger than the pool ({n})")
    orders = random_orders(n, rule.max_samples, draws, np.random.default_rng(seed))
    credit, used, tok = evaluate_orders(rule, answers, correct, orders, tokens, scores)
    se = float(credit.std(ddof=1) / math.sqrt(draws)) if draws > 1 else float("nan")
    return {"accuracy": float(credit.mean()), "samples": float(used.mean()), "tokens": float(tok.mean()),
            "credit_se": se}


def exact(rule: StopRule, answers, correct, tokens=None, scores=None) -> dict[str, float]:
    """The rule's expected credit, samples and tokens over every ordering of a small pool (n <= 8)."""
    n = len(answers)
    if n > 8:
        raise ValueError(f"exact enumeration is for pools of at most 8 samples (n! orderings), got {n}")
    orders = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    credit, used, tok = evaluate_orders(rule, answers, correct, orders, tokens, scores)
    return {"accuracy": float(credit.mean()), "samples": float(used.mean()), "tokens": float(tok.mean())}


def _first_reach(curve: np.ndarray, target: float) -> float:
    """The smallest k (1-based, linear between integers: a mix of k and k+1 samples) where curve reaches target;
    NaN when it never does."""
    hit = np.flatnonzero(curve >= target - 1e-12)
    if not len(hit):
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return 1.0
    return float(i + (target - curve[i - 1]) / (curve[i] - curve[i - 1]))


def summarize_rules(problems: Sequence, rules: Sequence[StopRule], verifier: str | None = None, draws: int = 500,
                    seed: int = 0, resamples: int = 1000) -> dict:
    """Every rule on every pool (Monte Carlo over orderings), beside fixed-k majority vote and best-of-k by
    ``verifier`` at every k up to the largest cap (exact). Per rule: accuracy, samples and tokens per problem
    (means over problems with 95% bootstrap intervals), the fixed-k accuracy at the same mean samples (linear
    between integer k), and the savings at matched accuracy: the samples fixed-k majority needs to reach the rule's
    accuracy over the samples the rule used (NaN when fixed-k never reaches it; ``censored`` is that share of the
    bootstrap replicates). ``problems`` need answers, correct, completion_tokens, prompt_tokens and scores."""
    K = max(r.max_samples for r in rules)
    if any(len(p.answers) < K for p in problems):
        raise ValueError(f"a cap of {K} samples needs pools of at least {K}")
    P, ks = len(problems), list(range(1, K + 1))
    maj = np.array([estimators.majority_curve(list(p.answers), list(p.correct), ks) for p in problems])
    bok = (np.array([estimators.best_of_k_curve(p.scores[verifier], [float(c) for c in p.correct], ks)
                     for p in problems]) if verifier else None)
    mean_tok = np.array([np.mean(p.completion_tokens) for p in problems])
    prompt = np.array([p.prompt_tokens for p in problems], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, P, size=(resamples, P))
    out = {"ks": ks, "majority": maj.mean(axis=0).tolist(), "draws": draws, "n_problems": P, "verifier": verifier,
           "tokens_per_sample": float(mean_tok.mean()), "prompt_tokens": float(prompt.mean()),
           "best_of_k": bok.mean(axis=0).tolist() if bok is not None else None, "rules": []}
    maj_boot = np.stack([maj[i].mean(axis=0) for i in idx])
    for rule in rules:
        if rule.kind in SCORED and not verifier:
            continue
        per = np.array([list(monte_carlo(rule, p.answers, p.correct, p.completion_tokens,
                                         p.scores.get(verifier) if verifier else None, draws,
                                         seed=seed + 7919 * j).values()) for j, p in enumerate(problems)])
        acc, samples, tokens = per[:, 0], per[:, 1], per[:, 2] + prompt
        row = {"rule": rule.label, "kind": rule.kind, "accuracy": float(acc.mean()), "samples": float(samples.mean()),
               "tokens": float(tokens.mean()), "mc_se": float(np.sqrt((per[:, 3] ** 2).sum()) / P)}
        for name, x in (("accuracy", acc), ("samples", samples), ("tokens", tokens)):
            boot = x[idx].mean(axis=1)
            row[f"{name}_lo"], row[f"{name}_hi"] = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        s = samples.mean()
        # paired over problems: each problem's fixed-k curve at the rule's mean samples (linear between integer k,
        # so the mean of the interpolations is the interpolation of the mean)
        for name, curve in (("majority", maj), ("best_of_k", bok)):
            if curve is None:
                continue
            same = np.array([np.interp(s, ks, c) for c in curve])
            row[f"{name}_at_same_samples"] = float(same.mean())
            d = (acc - same)[idx].mean(axis=1)
            row[f"minus_{name}_at_same_samples"] = float((acc - same).mean())
            row[f"minus_{name}_at_same_samples_lo"], row[f"minus_{name}_at_same_samples_hi"] = (
                float(v) for v in np.quantile(d, [0.025, 0.975]))
        cap = maj[:, rule.max_samples - 1]
        row["cap"] = rule.max_samples
        row["minus_majority_at_cap"] = float((acc - cap).mean())
        row["minus_majority_at_cap_lo"], row["minus_majority_at_cap_hi"] = (
            float(v) for v in np.quantile((acc - cap)[idx].mean(axis=1), [0.025, 0.975]))
        row["cap_over_samples"] = float(rule.max_samples / s)
        k_match = _first_reach(maj.mean(axis=0), acc.mean())
        row["majority_samples_to_match"] = k_match
        row["savings"] = float(k_match / s)
        ratios = np.array([_first_reach(maj_boot[b], acc[i].mean()) / samples[i].mean()
                           for b, i in enumerate(idx)])
        ok = ratios[np.isfinite(ratios)]
        row["savings_lo"], row["savings_hi"] = ((float(v) for v in np.quantile(ok, [0.025, 0.975])) if len(ok)
                                                else (float("nan"), float("nan")))
        row["savings_censored"] = float(1 - len(ok) / len(ratios))
        row["token_savings"] = float((prompt.mean() + k_match * mean_tok.mean()) / tokens.mean())
        out["rules"].append(row)
    return out
