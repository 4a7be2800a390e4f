"""Train the tiny policy: a small Llama-architecture causal LM that solves arithmetic chains, imperfectly.

    python -m search.training.train_policy --out search/tiny/policy          # about 14 minutes on two otherwise idle CPU cores

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
import time
from pathlib import Path

from search.tasks.arith import ArithTask, Difficulty
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
    return p.parse_args(argv)


def encode(vocab: dict[str, int], prompt: str, solution: str) -> tuple[list[int], list[int]]:
    """Token ids of <s> prompt solution </s>, and the loss mask (1 on solution tokens and </s>)."""
    ids = [vocab["<s>"]] + [vocab[c] for c in prompt] + [vocab[c] for c in solution] + [vocab["</s>"]]
    n_prompt = 1 + len(prompt)
    mask = [0] * n_prompt + [1] * (len(ids) - n_prompt)
    return ids, mask


def main(argv=None) -> None:
    args = parse_args(argv)
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
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    t0, tokens, loss_ema = time.time(), 0, None
    model.train()
    for step in range(args.steps):
        batch = [encode(vocab, p.prompt, task.solution(p)) for p in (next(stream) for _ in range(args.batch))]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), vocab["<pad>"], dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (seq, mask) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            attn[i, : len(seq)] = 1
            labels[i, : len(seq)] = torch.tensor([t if m else -100 for t, m in zip(seq, mask)])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(attn.sum())
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            elapsed = time.time() - t0
            print(f"step {step:5d}  loss {loss_ema:.4f}  lr {lr_at(step):.2e}  tokens {tokens/1e6:.2f}M  "
                  f"{tokens/elapsed:,.0f} tok/s  {elapsed/60:.1f} min", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    save_tokenizer(args.out)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(n_params=n_params, tokens=tokens, minutes=round((time.time() - t0) / 60, 2),
                  final_loss=round(loss_ema, 4), training_flops=6 * n_params * tokens)
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out} ({record['minutes']} min, {tokens/1e6:.2f}M tokens)")


if __name__ == "__main__":
    main()
