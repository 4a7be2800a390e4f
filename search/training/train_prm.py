"""Train the tiny process reward model: a Llama token classifier that scores each step of an arithmetic solution.

    python -m search.prm_labels --problems 2500 --out prm_labels.jsonl      # Monte-Carlo labels (about 8 minutes)
    python -m search.training.train_prm --labels prm_labels.jsonl --out search/tiny/prm   # at most --minutes (12)

The model is the tiny policy's transformer with a fresh two-class head (``LlamaForTokenClassification``): a PRM
starts from the policy it judges, as real ones do, so it begins with the policy's sense of arithmetic. Its input is
``verifiers.prm.render`` of the prompt and the steps, each step followed by the separator (a space, a character the
task never writes); the loss is the cross-entropy against the hard Monte-Carlo label (or the soft one,
``--label soft``) at each separator and nowhere else. The exact step checker is never a training target: it is used
only to report the held-out AUROC in training.json.

Training stops at ``--steps`` or ``--minutes``, whichever comes first, and keeps the weights of the validation
step with the best AUROC (the labels are a few thousand solutions, so later epochs overfit). The checkpoint is saved
in Hugging Face format, so vLLM serves it as a pooling model (token classification) as it
would any PRM.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from search.analysis.verifier_metrics import auroc
from search.seeding import derive_seed
from search.training.labels import read_jsonl
from search.training.tokenizer import CHARS, SPECIAL, save_tokenizer
from verifiers.prm import render

SEPARATOR = " "
"""The step separator of the tiny PRM: one character token the arithmetic task never writes."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True, help="JSONL from python -m search.prm_labels")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--init", default="tiny-policy", help="policy checkpoint whose transformer starts the PRM")
    p.add_argument("--label", choices=("soft", "hard"), default="hard",
                   help="training target (hard: held-out AUROC 0.79 against 0.71 for soft on the shipped labels)")
    p.add_argument("--steps", type=int, default=2000, help="most optimizer steps")
    p.add_argument("--minutes", type=float, default=12.0, help="stop after this much training time")
    p.add_argument("--batch", type=int, default=64, help="solutions per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (linear warmup, cosine decay)")
    p.add_argument("--warmup", type=int, default=50, help="warmup steps")
    p.add_argument("--val-share", type=float, default=0.1, help="share of problems held out for validation")
    p.add_argument("--eval-every", type=int, default=250,
                   help="validate every this many steps; the checkpoint saved is the one with the best validation "
                        "AUROC against the exact step labels (early stopping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    from search.serving import checkpoint as ckpt

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    sep_id = vocab[SEPARATOR]

    examples = {"train": [], "val": []}
    for sol in read_jsonl(args.labels):
        ids = [vocab["<s>"]] + [vocab[c] for c in render(sol.prompt, sol.steps, SEPARATOR, "\n")]
        tags = [i for i, t in enumerate(ids) if t == sep_id]
        assert len(tags) == len(sol.steps), "a step contains the separator"
        target = sol.soft if args.label == "soft" else tuple(float(h) for h in sol.hard)
        split = "val" if derive_seed(args.seed, "val", sol.problem_id) / 2**31 < args.val_share else "train"
        examples[split].append((ids, tags, target, sol.exact))
    print(f"solutions: train {len(examples['train'])}, val {len(examples['val'])}", flush=True)

    policy = LlamaForCausalLM.from_pretrained(ckpt.resolve(args.init))
    config = policy.config
    config.architectures = ["LlamaForTokenClassification"]
    config.num_labels = 2
    config.id2label, config.label2id = {0: "wrong", 1: "right"}, {"wrong": 0, "right": 1}
    model = LlamaForTokenClassification(config)
    model.model.load_state_dict(policy.model.state_dict())
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def batch_tensors(batch):
        width = max(len(ids) for ids, *_ in batch)
        ids = torch.full((len(batch), width), vocab["<pad>"], dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols, soft, exact = [], [], [], []
        for b, (seq, tags, target, ex) in enumerate(batch):
            ids[b, :len(seq)] = torch.tensor(seq)
            attn[b, :len(seq)] = 1
            rows += [b] * len(tags)
            cols += tags
            soft += target
            exact += ex
        return ids, attn, torch.tensor(rows), torch.tensor(cols), torch.tensor(soft), exact

    def evaluate() -> dict:
        model.eval()
        scores, exact, soft = [], [], []
        with torch.no_grad():
            for i in range(0, len(examples["val"]), 256):
                ids, attn, rows, cols, target, ex = batch_tensors(examples["val"][i:i + 256])
                probs = model(input_ids=ids, attention_mask=attn).logits[rows, cols].softmax(-1)[:, 1]
                scores += probs.tolist()
                exact += ex
                soft += target.tolist()
        model.train()
        brier = sum((s - y) ** 2 for s, y in zip(scores, soft)) / max(1, len(scores))
        return {"val_steps": len(scores), "val_auroc_exact": auroc(scores, exact), "val_brier_soft": brier}

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps))))

    t0, tokens, loss_ema, step = time.time(), 0, None, 0
    order: list[int] = []
    best: tuple[float, int, dict, dict] = (-1.0, 0, {}, {})      # (AUROC, step, metrics, weights)

    def checkpoint_if_best() -> dict:
        nonlocal best
        metrics = evaluate()
        if (metrics["val_auroc_exact"] or 0.0) > best[0]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (metrics["val_auroc_exact"] or 0.0, step, metrics, state)
        return metrics
    model.train()
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        if len(order) < args.batch:
            order = list(range(len(examples["train"])))
            rng.shuffle(order)
        batch = [examples["train"][order.pop()] for _ in range(args.batch)]
        ids, attn, rows, cols, target, _ = batch_tensors(batch)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logp = model(input_ids=ids, attention_mask=attn).logits[rows, cols].log_softmax(-1)
        loss = -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(attn.sum())
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 100 == 0 or step % args.eval_every == 0:
            elapsed = time.time() - t0
            extra = checkpoint_if_best() if step % args.eval_every == 0 else {}
            print(f"step {step:5d}  loss {loss_ema:.4f}  lr {lr_at(step):.2e}  {tokens / elapsed:,.0f} tok/s  "
                  f"{elapsed / 60:.1f} min  {extra}", flush=True)
        step += 1

    checkpoint_if_best()
    _, best_step, final, state = best
    model.load_state_dict(state)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    save_tokenizer(args.out)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(separator=SEPARATOR, n_params=n_params, steps_done=step, best_step=best_step, tokens=tokens,
                  train_minutes=round((time.time() - t0) / 60, 2), final_loss=round(loss_ema, 4),
                  training_flops=6 * n_params * tokens, **final)
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}: {json.dumps(final)}")


if __name__ == "__main__":
    main()
