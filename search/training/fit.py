"""The training mechanics every tiny verifier shares: the data split, the schedule, the loop that keeps the best
held-out checkpoint, and the saved record.

``train_prm`` (token classifiers: PRMs and outcome reward models) and ``train_judge`` (a generative verifier) differ
only in how a solution becomes tensors, the loss and the held-out metrics; everything here is one place for both.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from search.contracts import LabError
from search.seeding import derive_seed


def add_training_args(p: argparse.ArgumentParser, steps: int, minutes: float) -> None:
    """The options every verifier trainer shares (size, schedule, data amount, split, stopping, seed, threads);
    ``steps`` and ``minutes`` are the trainer's defaults."""
    p.add_argument("--steps", type=int, default=steps, help="most optimizer steps")
    p.add_argument("--minutes", type=float, default=minutes, help="stop after this much training time")
    p.add_argument("--batch", type=int, default=64, help="solutions per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (linear warmup, cosine decay)")
    p.add_argument("--warmup", type=int, default=50, help="warmup steps")
    p.add_argument("--val-share", type=float, default=0.1, help="share of problems held out for validation")
    p.add_argument("--max-solutions", type=int, default=None,
                   help="train on the solutions of the file's first training problems, up to this many solutions "
                        "(smaller amounts are subsets of larger ones); the validation problems are the same whatever "
                        "the amount")
    p.add_argument("--eval-every", type=int, default=250,
                   help="validate every this many steps; the checkpoint saved is the one with the best validation "
                        "score (early stopping)")
    p.add_argument("--layers", type=int, default=None,
                   help="a fresh transformer of this many layers (with --width) instead of the policy's weights")
    p.add_argument("--width", type=int, default=None, help="hidden size of a fresh transformer (with --layers)")
    p.add_argument("--depth", type=int, default=None,
                   help="the policy's weights at another depth: its first DEPTH blocks (below the policy's depth), "
                        "or, at a multiple of it, every block followed by copies whose output projections start at "
                        "zero (LLaMA Pro block expansion: the model starts as the policy and grows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def run_cli(train: Callable[[argparse.Namespace], dict], args: argparse.Namespace) -> int:
    """Run a trainer as a command: 0 when it saved its checkpoint, 2 with one ``error:`` line on bad input."""
    try:
        train(args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


class Epochs:
    """Endless draws from ``pool``: each pass visits every item once, in an order shuffled by the caller's rng."""

    def __init__(self, pool: Sequence):
        self.pool = pool
        """The items drawn from."""
        self.order: list[int] = []
        """Indices of this pass not drawn yet (drawn from the end)."""

    def draw(self, rng: random.Random):
        """The next item; a new pass, shuffled by ``rng``, starts when the last one is used up."""
        if not self.order:
            self.order = list(range(len(self.pool)))
            rng.shuffle(self.order)
        return self.pool[self.order.pop()]


def by_problem(items, key=lambda item: item.problem_id) -> list[list]:
    """Items grouped by problem, groups in order of first appearance."""
    out: dict[str, list] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return list(out.values())


def split(solutions: Sequence, seed: int, val_share: float, max_solutions: int | None) -> tuple[list, list]:
    """(train, val) solutions, split by problem with a seeded hash (a problem's solutions stay together). Training
    takes the file's first training problems up to ``max_solutions`` solutions, so smaller amounts are subsets of
    larger ones, and the validation problems are the same whatever the amount."""
    train, val = [], []
    for group in by_problem(solutions):
        if derive_seed(seed, "val", group[0].problem_id) / 2**31 < val_share:
            val += group
        elif max_solutions is None or len(train) < max_solutions:
            train += group
    if not train or not val:
        raise LabError(f"the labels give {len(train)} training and {len(val)} validation solutions; both must be "
                       f"non-empty (label more problems, or change --val-share)")
    return train, val


def pairwise_loss(scores, correct: Sequence[bool], problems: Sequence[str]):
    """Mean over every (right, wrong) pair of solutions of one problem of ``-log sigmoid(s_right - s_wrong)``."""
    import torch

    terms = []
    for idx in by_problem(range(len(problems)), key=lambda i: problems[i]):
        right = [i for i in idx if correct[i]]
        wrong = [i for i in idx if not correct[i]]
        if right and wrong:
            terms.append(torch.nn.functional.logsigmoid(scores[right][:, None] - scores[wrong][None, :]).ravel())
    if not terms:
        raise LabError("a pairwise batch holds no problem with both a right and a wrong solution")
    return -torch.cat(terms).mean()


def cosine_lr(step: int, lr: float, warmup: int, steps: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 5% of ``lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps))))


@dataclass
class Fitted:
    """What one training run did."""

    steps_done: int
    """Optimizer steps taken."""
    best_step: int
    """The step whose weights were kept (best held-out ``select`` metric)."""
    metrics: dict
    """The held-out metrics at ``best_step``."""
    tokens: int
    """Training tokens read (padding excluded)."""
    minutes: float
    """Wall-clock training time."""
    final_loss: float
    """Exponential moving average of the loss at the end."""


def fit(model, batches: Callable[[random.Random], Sequence], loss_of: Callable, evaluate: Callable[[], dict],
        select: str, args) -> Fitted:
    """Train ``model`` with AdamW until ``args.steps`` steps or ``args.minutes``, evaluating every
    ``args.eval_every`` steps and keeping the weights with the highest ``evaluate()[select]``.

    ``batches(rng)`` draws the next batch; ``loss_of(batch)`` returns (loss tensor, tokens read)."""
    import torch

    rng = random.Random(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    t0, tokens, loss_ema, step = time.time(), 0, None, 0
    best: tuple[float, int, dict, dict] = (-math.inf, 0, {}, {})      # (value, step, metrics, weights)

    def checkpoint_if_best() -> dict:
        nonlocal best
        model.eval()
        with torch.no_grad():
            metrics = evaluate()
        model.train()
        value = metrics.get(select)
        value = -math.inf if value is None else value
        if value > best[0] or not best[3]:
            best = (value, step, metrics, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return metrics

    model.train()
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        batch = batches(rng)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.lr, args.warmup, args.steps)
        loss, n_tokens = loss_of(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += n_tokens
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 100 == 0 or step % args.eval_every == 0:
            elapsed = time.time() - t0
            extra = checkpoint_if_best() if step % args.eval_every == 0 else {}
            print(f"step {step:5d}  loss {loss_ema:.4f}  lr {cosine_lr(step, args.lr, args.warmup, args.steps):.2e}  "
                  f"{tokens / elapsed:,.0f} tok/s  {elapsed / 60:.1f} min  {extra}", flush=True)
        step += 1
    checkpoint_if_best()
    _, best_step, metrics, state = best
    model.load_state_dict(state)
    return Fitted(step, best_step, metrics, tokens, round((time.time() - t0) / 60, 2),
                  round(loss_ema if loss_ema is not None else float("nan"), 4))


def save(model, out: Path, args, fitted: Fitted, **extra) -> dict:
    """Write the checkpoint (Hugging Face format, the tiny tokenizer) and ``training.json``: the arguments, what
    ``fit`` did, the parameter count and the training FLOPs (6 x parameters x tokens); return the record."""
    from search.training.tokenizer import save_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out)
    n_params = sum(p.numel() for p in model.parameters())
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(extra, n_params=n_params, steps_done=fitted.steps_done, best_step=fitted.best_step,
                  tokens=fitted.tokens, train_minutes=fitted.minutes, final_loss=fitted.final_loss,
                  training_flops=6 * n_params * fitted.tokens, **fitted.metrics)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}: {json.dumps(fitted.metrics)}")
    return record


def fresh_or_policy(config, model_class, init_state, layers: int | None, width: int | None,
                    depth: int | None = None):
    """A model of ``model_class`` on the policy's ``config``: with the policy's transformer weights
    (``init_state``), at ``depth`` blocks if given (``policy_depth``), or, given ``layers`` and ``width``, a fresh
    transformer of that shape (heads of 32)."""
    if (layers is None) != (width is None):
        raise LabError("--layers and --width go together (a fresh transformer of that shape); give both or neither")
    if layers is not None and depth is not None:
        raise LabError("--depth grows or cuts the policy's transformer; --layers/--width make a fresh one: give one")
    if layers is not None:
        if layers < 1 or width < 32 or width % 32:
            raise LabError(f"--layers {layers} --width {width}: need layers >= 1 and a width that is a multiple of 32")
        config.num_hidden_layers, config.hidden_size = layers, width
        config.intermediate_size, config.head_dim = 4 * width, 32
        config.num_attention_heads = config.num_key_value_heads = width // 32
    if depth is not None:
        init_state = policy_depth(init_state, config.num_hidden_layers, depth)
        config.num_hidden_layers = depth
    model = model_class(config)
    if layers is None:
        model.model.load_state_dict(init_state)
    return model


ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")
"""The output projections of a block copy in block expansion: zero, so the copy adds nothing to the residual stream
and the grown model computes exactly what the policy does until training moves them."""


def policy_depth(state: dict, layers: int, depth: int) -> dict:
    """The transformer state dict ``state`` (of ``layers`` blocks) at ``depth`` blocks: its first ``depth`` blocks
    when ``depth <= layers``; at ``depth = m * layers``, block i followed by m - 1 copies of itself with ``ZEROED``
    weights at zero (LLaMA Pro's block expansion, Wu et al. 2024)."""
    if depth < 1 or (depth > layers and depth % layers):
        raise LabError(f"--depth {depth}: give at most the policy's {layers} blocks, or a multiple of {layers}")
    out = {k: v for k, v in state.items() if not k.startswith("layers.")}
    copies = max(1, depth // layers)
    for new in range(depth):
        old, copy = divmod(new, copies) if depth > layers else (new, 0)
        prefix = f"layers.{old}."
        for key, value in state.items():
            if key.startswith(prefix):
                rest = key[len(prefix):]
                value = value.clone()
                if copy and rest in ZEROED:
                    value.zero_()
                out[f"layers.{new}.{rest}"] = value
    return out
