"""Pool estimators behind the scaling curves: pass@k, best-of-k, majority@k, weighted vote, binary verifier.

Each estimator averages a selection rule over all k-subsets of one pool of n i.i.d. samples of a problem (see
shared/ESTIMATORS.md for the formulas), which is unbiased for the k-sample quantity. Average the per-problem numbers
over problems, then put a bootstrap interval on that mean with `bootstrap_ci` or `bootstrap_ci_matrix`.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from numbers import Integral
from typing import Hashable, Sequence

import numpy as np

_BLOCK = 1 << 22  # elements per temporary array in the chunked loops (bounds memory for big n)
_CHUNK = 1 << 14  # elements per temporary array in the weighted-vote loop (cache-sized; see weighted_vote_curve)


def _int(name: str, x, lo: int, hi: int | None = None) -> int:
    if isinstance(x, bool) or not isinstance(x, Integral):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if x < lo or (hi is not None and x > hi):
        rng = f"{lo} <= {name} <= {hi}" if hi is not None else f"{name} >= {lo}"
        raise ValueError(f"{name} must satisfy {rng}, got {name}={x}")
    return int(x)


def _k(k, n: int) -> int:
    if n < 1:
        raise ValueError("the pool is empty (n=0): need at least one sample")
    if isinstance(k, Integral) and not isinstance(k, bool) and k > n:
        raise ValueError(f"k={k} is larger than the pool size n={n}: cannot draw k samples from n")
    return _int("k", k, 1, n)


def _ks(ks: Sequence[int], n: int) -> np.ndarray:
    return np.array([_k(k, n) for k in np.atleast_1d(np.asarray(ks)).tolist()], dtype=np.int64)


def _same_len(**arrays) -> int:
    lens = {name: len(a) for name, a in arrays.items()}
    if len(set(lens.values())) > 1:
        raise ValueError("inputs must have the same length, got " + ", ".join(f"len({a})={b}" for a, b in lens.items()))
    return next(iter(lens.values()))


def _miss(n: int, c: int, k: int) -> float:
    # C(n-c, k) / C(n, k) as a product of ratios: the binomials themselves overflow float64 from n ~ 1030.
    # Clipping keeps the factors for i < k (negative) from flipping the sign once the i == k factor made it 0.
    return float(np.prod(np.clip(1.0 - k / np.arange(n - c + 1, n + 1), 0.0, None)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (coverage): chance that a random k-subset of a pool of n samples holds a correct one.

    Args: n pool size, c number of correct samples (0 <= c <= n), k subset size (1 <= k <= n).
    Returns 1 - C(n-c, k) / C(n, k), computed as a running product (stable for any n).
    Complexity: O(c).
    """
    n = _int("n", n, 1)
    k = _k(k, n)
    c = _int("c", c, 0, n)
    return 1.0 - _miss(n, c, k)


def best_of_k_curve(scores: Sequence[float], rewards: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """Expected reward of the highest-scoring sample of a random k-subset, for every k in ks.

    Ties in score are broken uniformly: equal scores form a group G with m samples strictly above it, which holds the
    best of the subset with chance [C(n-m, k) - C(n-m-|G|, k)] / C(n, k), shared evenly inside G.
    Args: scores and rewards, one per sample of the pool (same length n); ks subset sizes in 1..n.
    Returns a float array of len(ks). Complexity: O(n log n + len(ks) * n).
    """
    s, y = np.asarray(scores, dtype=float), np.asarray(rewards, dtype=float)
    n = _same_len(scores=s, rewards=y)
    ks = _ks(ks, n)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: a NaN score cannot be ranked")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], n]
    means = np.add.reduceat(y, starts) / (ends - starts)
    denom = n - np.arange(n)
    out = np.empty(len(ks))
    step = max(1, _BLOCK // (n + 1))
    for b in range(0, len(ks), step):
        kb = ks[b:b + step, None].astype(float)
        # R[:, m] = C(n-m, k) / C(n, k) = prod_{i<m} (1 - k/(n-i)): ratios in [0, 1], no overflow at n = 4096
        ratio = np.cumprod(np.clip(1.0 - kb / denom, 0.0, None), axis=1)
        R = np.concatenate([np.ones((len(kb), 1)), ratio], axis=1)
        out[b:b + step] = (R[:, starts] - R[:, ends]) @ means
    return out


def best_of_k(scores: Sequence[float], rewards: Sequence[float], k: int) -> float:
    """Expected reward of the highest-scoring sample of a uniformly random k-subset of the pool (ties uniform).

    Args: scores, rewards (one per sample, same length n), k in 1..n. Complexity: O(n log n).
    """
    return float(best_of_k_curve(scores, rewards, [k])[0])


def _classes(answers: Sequence[Hashable], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Class id per sample (-1 for a None answer) and correctness per class; checks correctness is per answer."""
    ids: dict = {}
    flags: list[bool] = []
    cls = np.empty(len(answers), dtype=np.int64)
    for i, (a, ok) in enumerate(zip(answers, correct)):
        if a is None:
            cls[i] = -1
            continue
        if a not in ids:
            ids[a] = len(flags)
            flags.append(bool(ok))
        elif flags[ids[a]] != bool(ok):
            raise ValueError(f"answer {a!r} is marked both correct and incorrect: "
                             "correctness must depend on the answer only")
        cls[i] = ids[a]
    return cls, np.array(flags, dtype=bool)


def _lcomb(lf: np.ndarray, a, b) -> np.ndarray:
    """log C(a, b) from a log-factorial table, -inf outside 0 <= b <= a."""
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    ok = (b >= 0) & (b <= a)
    out = np.full(a.shape, -np.inf)
    out[ok] = lf[a[ok]] - lf[b[ok]] - lf[a[ok] - b[ok]]
    return out


def _majority_target(c: int, others: list[int], z: int, ks: np.ndarray, lf: np.ndarray) -> np.ndarray:
    """P(class of size c wins the plurality, ties split) for each k, against classes `others` and z non-voters."""
    n, m, kmax = c + z + sum(others), len(others), int(ks.max())
    J, T = min(c, kmax), min(n - c, kmax - 1)
    t = np.arange(T + 1)
    # P[j-1, t, u]: among t-subsets of the pool processed so far (non-voters first), the FRACTION in which every
    # class takes at most j samples and exactly u take j. Fractions, not the counts W_j(t, u) of ESTIMATORS.md,
    # because the counts overflow float64 for n above ~1000; the update weights are then hypergeometric pmfs.
    P = np.zeros((J, T + 1, m + 1))
    P[:, :min(z, T) + 1, 0] = 1.0
    N = z
    for s in others:
        A = min(s, J)
        a = np.arange(A + 1)[:, None]
        den = _lcomb(lf, N + s, t)
        h = np.exp(_lcomb(lf, s, a) + _lcomb(lf, N, t - a) - np.where(np.isfinite(den), den, 0.0))
        new = np.zeros_like(P)
        for ai in range(A + 1):
            w = h[ai, ai:, None]
            new[ai:, ai:, :] += w * P[ai:, :T + 1 - ai, :]  # caps j > ai: the class stays below the target
            if ai >= 1:  # cap j == ai: the class ties the target, u goes up by one
                new[ai - 1, ai:, 1:] += w * P[ai - 1, :T + 1 - ai, :-1]
        P, N = new, N + s
    S = (P / (np.arange(m + 1) + 1.0)).sum(axis=2)
    out = np.zeros(len(ks))
    for i, k in enumerate(ks.tolist()):
        j = np.arange(max(1, k - (n - c)), min(J, k) + 1)
        w = np.exp(_lcomb(lf, c, j) + _lcomb(lf, n - c, k - j) - _lcomb(lf, n, k))
        out[i] = w @ S[j - 1, k - j]
    return out


def majority_curve(answers: Sequence[Hashable], correct: Sequence[bool], ks: Sequence[int]) -> np.ndarray:
    """Exact maj@k for every k in ks: chance the plurality answer of a random k-subset is correct.

    Ties are split uniformly (the correct class tied with u others counts 1/(u+1)). None answers do not vote but
    occupy places in the subset; a subset without any vote counts as wrong. If several answers are correct their
    win chances add up. Args: answers (hashable, None = malformed), correct (per sample; must agree within an
    answer), ks subset sizes in 1..n. Dynamic program over classes, in probabilities so any n is safe.
    Complexity: O(sum over correct classes of n * J * T * (m+1)) with J = min(c, max k), T = max k, m classes.
    """
    n = _same_len(answers=answers, correct=correct)
    ks = _ks(ks, n)
    cls, good = _classes(answers, correct)
    if not good.any() or len(ks) == 0:
        return np.zeros(len(ks))
    sizes = np.bincount(cls[cls >= 0], minlength=len(good)).tolist()
    return np.array(_majority_from_sizes(tuple(sizes), tuple(good.tolist()), int((cls < 0).sum()), tuple(ks.tolist())))


@functools.lru_cache(maxsize=8192)
def _majority_from_sizes(sizes: tuple, good: tuple, z: int, ks: tuple) -> tuple[float, ...]:
    """maj@k from the class sizes (in first-seen order), which classes are correct and the non-voters: all the
    dynamic program reads, so problems (and the jobs of a re-scoring sweep, whose answers do not change) with the
    same sizes share one computation, the same numbers bit for bit."""
    n, ks_arr = sum(sizes) + z, np.array(ks)
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    out = np.zeros(len(ks))
    for g in (i for i, ok in enumerate(good) if ok):
        out += _majority_target(sizes[g], list(sizes[:g] + sizes[g + 1:]), z, ks_arr, lf)
    return tuple(out.tolist())


def majority_at_k(answers: Sequence[Hashable], correct: Sequence[bool], k: int) -> float:
    """Exact maj@k for one k (see `majority_curve` for the rules, arguments and complexity)."""
    return float(majority_curve(answers, correct, [k])[0])


class VoteLayouts:
    """The weighted vote's draws, kept between calls: for one pool's answers, budgets, draws and seed, every chunk's
    ``(top, flat, present)`` (``_vote_layout``), which hold everything a call computes except what the weights add.
    A noise sweep's jobs, or a study's verifiers, score the same pools with other weights and reuse them: about
    two thirds of the weighted vote's time. A layout is kept from the second call that builds it on, so a single
    pass over many pools (one run) keeps nothing; least recently used go first once their arrays pass
    ``max_bytes``, and a layout larger than that is never kept. Thread-safe."""

    SEEN = 1 << 16
    """How many keys seen once are remembered (a digest each), to keep their layout when they come again."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        """Most bytes of arrays kept."""
        self.nbytes = 0
        """Bytes of arrays kept now."""
        self.hits = self.misses = 0
        """Calls that found their layout, and calls that built it, since the last ``clear``."""
        self._kept: OrderedDict[bytes, tuple] = OrderedDict()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        """Forget every layout and key and reset the counters."""
        with self._lock:
            self._kept.clear()
            self._seen.clear()
            self.nbytes = self.hits = self.misses = 0

    def get(self, key: tuple, build) -> tuple:
        """The layout of ``key`` (a tuple of numbers and bytes), built by ``build()`` (a tuple of chunks of arrays)
        when not kept."""
        digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
        with self._lock:
            layout = self._kept.get(digest)
            if layout is not None:
                self._kept.move_to_end(digest)
                self.hits += 1
                return layout
            self.misses += 1
            again = self._seen.pop(digest, False) is None
            if not again:
                self._seen[digest] = None
                if len(self._seen) > self.SEEN:
                    self._seen.popitem(last=False)
        layout = build()
        size = sum(a.nbytes for chunk in layout for a in chunk)
        with self._lock:
            if again and size <= self.max_bytes and digest not in self._kept:
                self._kept[digest] = layout
                self.nbytes += size
                while self.nbytes > self.max_bytes:
                    _, old = self._kept.popitem(last=False)
                    self.nbytes -= sum(a.nbytes for chunk in old for a in chunk)
        return layout


VOTE_LAYOUTS = VoteLayouts(max_bytes=256 << 20)
"""The weighted vote's kept draws (``VoteLayouts``): at most 256 MiB, about 560 pools of 64 samples at 2,000 draws."""


def _vote_layout(order: np.ndarray, ks: np.ndarray, cls: np.ndarray, m: int) -> tuple[np.ndarray, ...]:
    """What the weighted votes of the subsets order[d, :k] read besides the weights, for increasing ks: ``top``,
    the samples of each draw's largest subset; ``flat``, where each of them votes (answer, budget segment, draw);
    ``present``, whether an answer has a vote in a subset, shape (m, len(ks), draws)."""
    d, K = order.shape[0], len(ks)
    top = order[:, :ks[-1]]
    # Position i of a draw lies in segment s, the first budget with i < ks[s]; one bincount sums the weights and
    # counts the samples of every (answer, segment, draw), and a cumulative sum over segments gives every budget's
    # votes. None answers go to an extra answer m that never wins. Summing by segments rounds differently from
    # summing sample by sample only in the last bits, which the tie tolerance absorbs.
    seg = np.searchsorted(ks, np.arange(ks[-1]), side="right")
    flat = ((np.where(cls >= 0, cls, m) * (K * d))[top] + (seg * d + np.arange(d)[:, None])).ravel()
    size = (m + 1) * K * d
    present = np.bincount(flat, minlength=size).reshape(m + 1, K, d)[:m].cumsum(axis=1) > 0
    small = np.uint16 if len(cls) <= np.iinfo(np.uint16).max else np.int64
    return top.astype(small), flat.astype(np.int32 if size <= np.iinfo(np.int32).max else np.int64), present


def _weighted_scores(layout: tuple[np.ndarray, ...], w: np.ndarray, good: np.ndarray, tol: float) -> np.ndarray:
    """Weighted-vote value of every subset of a ``_vote_layout``: an array (len(ks), draws)."""
    top, flat, present = layout
    m, K, d = present.shape
    votes = np.bincount(flat, weights=w[top].ravel(), minlength=(m + 1) * K * d).reshape(m + 1, K, d)[:m]
    # an absent answer must not beat negative weight sums with 0
    votes = np.where(present, votes.cumsum(axis=1), -np.inf)
    tied = present & (votes >= votes.max(axis=0) - tol)
    n_tied = tied.sum(axis=0)
    return np.where(n_tied > 0, tied[good].sum(axis=0) / np.maximum(n_tied, 1), 0.0)


def weighted_vote_curve(answers: Sequence[Hashable], weights: Sequence[float], correct: Sequence[bool],
                        ks: Sequence[int], n_draws: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimates of weighted-majority accuracy for every k in ks, with their standard errors.

    Each answer's vote is the sum of its samples' verifier weights; None answers do not vote; ties at the top weight
    (equal up to 1e-12 of the total |weight|, to absorb summation rounding) count 1/(number tied) if the correct
    answer is among them; a subset with no vote is wrong. Each k averages over n_draws random k-subsets
    (deterministic given seed); k == n has a single subset and is computed exactly with standard error 0 (nan if
    n_draws == 1). Every k reuses the same draws: draw d gives each sample a uniform key (row d of one seeded
    (n_draws, n) stream) and its k-subset is the k samples with the smallest keys, so the subsets of one draw are
    nested and the keys are sorted once for all budgets. The draws and where each sample votes depend on the
    answers, not on the weights: from their second use they are kept in ``VOTE_LAYOUTS`` for the next call on the
    same answers, ks, n_draws and seed (a re-scoring sweep's next job), which then only adds up its weights.
    Args: answers, weights, correct (one per sample), ks subset sizes in 1..n, n_draws >= 1, seed.
    Returns (estimates, standard errors), arrays aligned with ks.
    Complexity: O(n_draws * n log n) time, memory bounded by chunking the draws.
    """
    n = _same_len(answers=answers, weights=weights, correct=correct)
    ks = _ks(ks, n)
    n_draws = _int("n_draws", n_draws, 1)
    w = np.asarray(weights, dtype=float)
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite")
    cls, good = _classes(answers, correct)
    est, se = np.zeros(len(ks)), np.zeros(len(ks))
    if not good.any():
        return est, se
    tol = 1e-12 * max(1.0, float(np.abs(w).sum()))
    m = len(good)
    est[ks == n] = _weighted_scores(_vote_layout(np.arange(n)[None, :], np.array([n]), cls, m), w, good, tol)[0, 0]
    sampled = np.unique(ks[ks < n])
    if not len(sampled):
        return est, se
    # Chunks of draws small enough for the temporaries to stay near the CPU cache (fresh pages for big temporaries
    # cost more than the counting). Keys drawn chunk by chunk are the numbers of one (n_draws, n) draw.
    step = max(1, _CHUNK // (n + len(sampled) * (m + 1)))

    def build() -> tuple:
        rng = np.random.default_rng(seed)
        return tuple(_vote_layout(np.argsort(rng.random((min(step, n_draws - b), n)), axis=1), sampled, cls, m)
                     for b in range(0, n_draws, step))

    key = (seed, n_draws, step, sampled.tobytes(), cls.tobytes())
    vals = np.concatenate([_weighted_scores(chunk, w, good, tol) for chunk in VOTE_LAYOUTS.get(key, build)], axis=1)
    for k, v in zip(sampled.tolist(), vals):
        est[ks == k] = v.mean()
        se[ks == k] = v.std(ddof=1) / np.sqrt(n_draws) if n_draws > 1 else float("nan")
    return est, se


def weighted_vote_at_k(answers: Sequence[Hashable], weights: Sequence[float], correct: Sequence[bool], k: int,
                       n_draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(estimate, standard error) of weighted-majority accuracy at one k (see `weighted_vote_curve` for the rules,
    arguments and complexity)."""
    est, se = weighted_vote_curve(answers, weights, correct, [k], n_draws=n_draws, seed=seed)
    return float(est[0]), float(se[0])


def binary_accept_at_k(accepted: Sequence[bool], correct: Sequence[bool], k: int,
                       cost: float = 0.0) -> tuple[float, float, float]:
    """Binary verifier with abstention: pick uniformly among the accepted samples of a k-subset, abstain if none.

    Args: accepted and correct (one per sample), k in 1..n, cost charged for an accepted wrong sample.
    Returns (accuracy_k, reward_k, abstain_k), reward being +1 correct, -cost accepted-but-wrong, 0 abstain.
    Complexity: O(n).
    """
    acc, cor = np.asarray(accepted, dtype=bool), np.asarray(correct, dtype=bool)
    n = _same_len(accepted=acc, correct=cor)
    k = _k(k, n)
    A, cA = int(acc.sum()), int((acc & cor).sum())
    if A == 0:
        return 0.0, 0.0, 1.0
    none = _miss(n, A, k)
    return (1.0 - none) * cA / A, (1.0 - none) * (cA - cost * (A - cA)) / A, none


def bootstrap_ci_matrix(values: np.ndarray, n_resamples: int = 1000, level: float = 0.95,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over problems, one interval per column of a (problems x k) matrix.

    Every column uses the same resampled problem sets, so the intervals of a curve are consistent with each other.
    A column with one problem or no variance gets (mean, mean). Deterministic given seed.
    Args: values (P, K) finite, n_resamples >= 1, level in (0, 1), seed. Returns (lower, upper), each of length K.
    Complexity: O(n_resamples * P * K) time, memory bounded by chunking.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"values must be a non-empty (problems x k) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite (a NaN would poison every resampled mean)")
    n_resamples = _int("n_resamples", n_resamples, 1)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    P = x.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, x.shape[1]))
    step = max(1, _BLOCK // P)
    for b in range(0, n_resamples, step):
        r = min(step, n_resamples - b)
        idx = rng.integers(0, P, size=(r, P)) + P * np.arange(r)[:, None]
        means[b:b + r] = np.bincount(idx.ravel(), minlength=r * P).reshape(r, P) @ x / P
    lo, hi = np.quantile(means, [(1.0 - level) / 2, (1.0 + level) / 2], axis=0)
    flat = (x == x[0]).all(axis=0)  # x[0], not x.mean(): the mean of a constant column can be off by rounding
    return np.where(flat, x[0], lo), np.where(flat, x[0], hi)


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem values (problems resampled with replacement).

    One value or zero variance gives (mean, mean). Deterministic given seed.
    Args: values (P,) finite, n_resamples >= 1, level in (0, 1), seed. Complexity: O(n_resamples * P).
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {x.shape}; use bootstrap_ci_matrix")
    lo, hi = bootstrap_ci_matrix(x[:, None], n_resamples, level, seed)
    return float(lo[0]), float(hi[0])


def simultaneous_band(values: np.ndarray, n_resamples: int = 1000, level: float = 0.95,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A simultaneous band for the column means of a (problems x k) matrix: resample problems, standardise each
    column's bootstrap deviation by its bootstrap standard deviation, and widen every column by the ``level``
    quantile of the maximum over columns. The whole curve lies inside with probability ``level``."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError("simultaneous_band needs a (problems x k) matrix with at least 2 problems")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[0], size=(n_resamples, values.shape[0]))
    boot = values[idx].mean(axis=1)
    mean = values.mean(axis=0)
    sd = boot.std(axis=0, ddof=1)
    sd = np.where(sd > 0, sd, np.inf)     # a column with no spread constrains nothing
    crit = np.quantile(np.max(np.abs(boot - mean) / sd, axis=1), level)
    half = crit * np.where(np.isfinite(sd), sd, 0.0)     # (inf * 0 would warn)
    return mean - half, mean + half
