"""Train the tiny policy: a small Llama-architecture causal LM that solves arithmetic chains, imperfectly.

    python -m search.training.train_policy --out search/tiny/policy          # about 14 minutes on two otherwise idle CPU cores
    python -m search.training.train_policy --out DIR --hidden 64 --layers 2 --heads 2 --save-at 100,200,400

``--save-at`` keeps the model at those steps along the same run (``DIR/step-00100``, ...), each a servable checkpoint
with its own training.json (tokens and training FLOPs so far): the train-versus-test frontier study
(``search.frontier``) measures each. With it the run also keeps ``DIR/resume.pt`` (model, optimizer, step) at every
saved step, and a rerun of the same command continues from there; a rerun with other arguments is refused.

The model sees only train-split problems (the task's hash split keeps every eval question out) and is trained with
the loss on the solution tokens only. It is saved in Hugging Face format (config.json, model.safetensors,
tokenizer.json) so vLLM serves it unchanged; training.json records the arguments, tokens seen, time and final loss.

Why it is a useful test subject (measured through the lab, see README): short chains of additions are nearly always
right, long chains with multiplications rarely, and multiplication mistakes repeat across samples, so majority vote
stays well below coverage.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Sequence

from search.contracts import LabError
from search.tasks.arith import ArithTask, Difficulty
from search.training.fit import run_cli
from search.training.tokenizer import VOCAB, save_tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps")
    p.add_argument("--batch", type=int, default=96, help="sequences per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (linear warmup, cosine decay)")
    p.add_argument("--warmup", type=int, default=60, help="warmup steps")
    p.add_argument("--hidden", type=int, default=128, help="model width")
    p.add_argument("--layers", type=int, default=4, help="transformer layers")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--min-ops", type=int, default=1, help="shortest training chain")
    p.add_argument("--max-ops", type=int, default=6, help="longest training chain")
    p.add_argument("--mul-weight", type=float, default=0.2, help="share of multiplications in training chains")
    p.add_argument("--max-addend", type=int, default=99, help="largest + and - operand in training chains")
    p.add_argument("--big-addend-weight", type=float, default=0.5, help="share of two-digit + and - operands")
    p.add_argument("--max-factor", type=int, default=9, help="largest * operand in training chains")
    p.add_argument("--seed", type=int, default=0, help="seed for data and initialisation")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--save-at", type=lambda text: sorted({int(x) for x in text.split(",") if x}), default=[],
                   help="comma-separated steps at which to keep a checkpoint (DIR/step-NNNNN) and the resume state")
    args = p.parse_args(argv)
    if any(step < 1 or step > args.steps for step in args.save_at):
        p.error(f"--save-at {args.save_at}: every step must be between 1 and --steps ({args.steps})")
    return args


def args_for(out: Path, options: dict, save_at: Sequence[int] = ()) -> argparse.Namespace:
    """The arguments of a training run from a mapping of this command's option names to values (``{"hidden": 96,
    "steps": 1200, ...}``, as a study's grid writes them), checked by this command's own parser: LabError naming the
    options when they are not a set of its options."""
    import contextlib
    import io

    argv = ["--out", str(out), *(["--save-at", ",".join(str(s) for s in save_at)] if save_at else [])]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):     # argparse's usage lines: one line naming the options
            return parse_args(argv)
    except SystemExit:
        raise LabError(f"{options} is not a set of train_policy options (python -m search.training.train_policy "
                       f"--help)") from None


def batch_tensors(batch: Sequence[tuple[list[int], list[int]]]):
    """(input ids, attention mask, labels) of ``encode``d sequences, right-padded; labels are -100 (no loss) off the
    solution tokens and on padding."""
    import torch

    from search.training.prm_model import right_padded

    ids, attn = right_padded([seq for seq, _ in batch])
    labels = torch.full(ids.shape, -100, dtype=torch.long)
    for i, (seq, mask) in enumerate(batch):
        labels[i, : len(seq)] = torch.tensor([t if m else -100 for t, m in zip(seq, mask)])
    return ids, attn, labels


def optimizer_step(model, opt, batch: Sequence[tuple[list[int], list[int]]], lr: float):
    """One step on ``encode``d sequences at learning rate ``lr`` (loss on solution tokens, gradients clipped to norm
    1); returns (the loss tensor, the batch's tokens)."""
    import torch

    ids, attn, labels = batch_tensors(batch)
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, int(attn.sum())


def cosine_lr(step: int, peak: float, warmup: int, steps: int) -> float:
    """Linear warmup to ``peak``, then cosine decay to 5% of it at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


RESUME_FILE = "resume.pt"
"""The state a ``--save-at`` run keeps at each saved step (model, optimizer, step, tokens, loss, arguments)."""


def run_record(args: argparse.Namespace) -> dict:
    """The arguments that define the run (not where it is written or its threads), as JSON values."""
    skip = {"out", "threads"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip}


def save_checkpoint(model, out: Path, args: argparse.Namespace, n_params: int, step: int, tokens: int,
                    minutes: float, loss: float) -> None:
    """The model in Hugging Face format with its tokenizer and training.json (arguments, steps and tokens so far,
    training FLOPs = 6 x parameters x tokens), written whole before it appears under ``out``."""
    import shutil

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    save_tokenizer(tmp)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(n_params=n_params, steps_done=step, tokens=tokens, minutes=round(minutes, 2),
                  final_loss=round(loss, 4), training_flops=6 * n_params * tokens)
    (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)


def encode(vocab: dict[str, int], prompt: str, solution: str) -> tuple[list[int], list[int]]:
    """Token ids of <s> prompt solution </s>, and the loss mask (1 on solution tokens and </s>)."""
    ids = [vocab["<s>"]] + [vocab[c] for c in prompt] + [vocab[c] for c in solution] + [vocab["</s>"]]
    n_prompt = 1 + len(prompt)
    mask = [0] * n_prompt + [1] * (len(ids) - n_prompt)
    return ids, mask


def train(args: argparse.Namespace) -> None:
    """Train (or continue) the run ``args`` describes; LabError when ``args.out`` holds another run's resume state."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    vocab = VOCAB
    task = ArithTask(Difficulty(min_ops=args.min_ops, max_ops=args.max_ops, mul_weight=args.mul_weight,
                                max_addend=args.max_addend, big_addend_weight=args.big_addend_weight, max_factor=args.max_factor), train_seed=args.seed)
    stream = task.stream("train", args.seed)

    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=args.hidden, intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"],
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params: {n_params:,}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        return cosine_lr(step, args.lr, args.warmup, args.steps)

    start, tokens, loss_ema, before_s = 0, 0, None, 0.0
    resume = args.out / RESUME_FILE
    if args.save_at and resume.exists():
        state = torch.load(resume, weights_only=False)
        if state["run"] != run_record(args):
            now = run_record(args)
            changed = sorted(k for k in set(state["run"]) | set(now) if state["run"].get(k) != now.get(k))
            raise LabError(f"{args.out} holds a run made with other arguments ({', '.join(changed)} differ): give a "
                           f"new --out, or delete {args.out}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, tokens, loss_ema, before_s = state["step"], state["tokens"], state["loss"], state["seconds"]
        for _ in range(start * args.batch):         # the data stream where the saved run left it
            next(stream)
        print(f"resumed at step {start} from {resume}", flush=True)

    t0 = time.time() - before_s
    model.train()
    for step in range(start, args.steps):
        batch = [encode(vocab, p.prompt, task.solution(p)) for p in (next(stream) for _ in range(args.batch))]
        loss, n = optimizer_step(model, opt, batch, lr_at(step))
        tokens += n
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            elapsed = time.time() - t0
            print(f"step {step:5d}  loss {loss_ema:.4f}  lr {lr_at(step):.2e}  tokens {tokens/1e6:.2f}M  "
                  f"{tokens/elapsed:,.0f} tok/s  {elapsed/60:.1f} min", flush=True)
        if step + 1 in args.save_at:
            minutes = (time.time() - t0) / 60
            save_checkpoint(model, args.out / f"step-{step + 1:05d}", args, n_params, step + 1, tokens, minutes,
                            loss_ema)
            torch.save({"run": run_record(args), "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": step + 1, "tokens": tokens, "loss": loss_ema, "seconds": time.time() - t0},
                       args.out / (RESUME_FILE + ".tmp"))
            (args.out / (RESUME_FILE + ".tmp")).replace(resume)      # a kill mid-write keeps the previous state

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    save_tokenizer(args.out)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(n_params=n_params, tokens=tokens, minutes=round((time.time() - t0) / 60, 2),
                  final_loss=round(loss_ema, 4), training_flops=6 * n_params * tokens)
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out} ({record['minutes']} min, {tokens/1e6:.2f}M tokens)")


def finetune(checkpoint: Path, pairs: Sequence[tuple[str, str]], out: Path, epochs: int = 1, batch: int = 64,
             lr: float = 5e-4, warmup: int = 10, seed: int = 0, threads: int = 2, extra: dict | None = None) -> dict:
    """Continue training the policy at ``checkpoint`` on (prompt, solution) ``pairs`` (the loss on solution tokens,
    as in training): ``epochs`` shuffled passes in batches of ``batch``, cosine schedule from ``lr``. Saves to
    ``out`` (written whole before it appears) with training.json: the fine-tune's tokens, and ``training_flops`` the
    checkpoint's own plus 6 x parameters x these tokens. ``extra`` joins the record. Returns the record."""
    import shutil

    import torch
    from transformers import LlamaForCausalLM

    if not pairs:
        raise LabError(f"nothing to fine-tune {checkpoint} on: no solution was kept")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(checkpoint)
    n_params = sum(p.numel() for p in model.parameters())
    before = json.loads((Path(checkpoint) / "training.json").read_text())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(seed)
    order = [i for _ in range(epochs) for i in rng.sample(range(len(pairs)), len(pairs))]
    steps = -(-len(order) // batch)
    t0, tokens = time.time(), 0
    model.train()
    for step in range(steps):
        part = [encode(VOCAB, *pairs[i]) for i in order[step * batch:(step + 1) * batch]]
        loss, n = optimizer_step(model, opt, part, cosine_lr(step, lr, warmup, steps))
        tokens += n
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    save_tokenizer(tmp)
    record = {"base": str(checkpoint), "pairs": len(pairs), "epochs": epochs, "batch": batch, "lr": lr,
              "warmup": warmup, "seed": seed, "steps_done": steps, "n_params": n_params, "finetune_tokens": tokens,
              "tokens": before.get("tokens", 0) + tokens, "minutes": round((time.time() - t0) / 60, 2),
              "final_loss": round(float(loss.item()), 4),
              "training_flops": before.get("training_flops", 0) + 6 * n_params * tokens, **(extra or {})}
    (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return record


def main(argv=None) -> int:
    """CLI: 0 when the policy is saved, 2 with one ``error:`` line on bad input."""
    return run_cli(train, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
