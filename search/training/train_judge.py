"""Train the tiny generative verifier: a causal LM that writes a verdict after a solution, sampled K times to vote.

    python -m search.prm_labels --problems 4000 --samples 8 --rollouts 0 --out verdicts.jsonl   # graded samples
    python -m search.training.train_judge --labels verdicts.jsonl --out search/tiny/judge        # at most --minutes

The tiny policy cannot judge its own work (it knows no words, so ``verifier=judge`` on it is blind). This script
teaches a copy of it one question: the model reads ``JUDGE_TEMPLATE`` filled with the problem and a sampled
solution and is trained, with cross-entropy on that one position, to write ``YES`` when the solution's final answer
is right and ``NO`` when it is wrong (GenRM's recipe: verification as next-token prediction). The labels are the
task's own grades of the policy's samples, made without rollouts. With ``--prefixes`` (the default) every proper
prefix of a solution is a training sequence too, labelled by the exact step label (every step so far right): one
verdict per sequence is a thin signal for a model that must check every line, and short prefixes teach the check of
one line first. Validation and use read whole solutions only.

Served by vLLM as a generative model like the policy, it is the judge of ``verifier=tiny_judge`` (P(yes) from one
greedy token's logprobs) and of ``verifier=tiny_sampled_judge`` (the share of yes among K sampled verdicts, every
verifier token charged), so compute can be split between policy samples and verdicts (``+sweep=judge_split``).
Training keeps the weights of the validation step with the best within-problem AUROC of P(yes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.analysis.verifier_metrics import auroc, within_auroc
from search.contracts import LabError
from search.training.fit import (Epochs, add_training_args, by_problem, fit, fresh_or_policy, pairwise_loss,
                                 run_cli, save, split)
from search.training.labels import read_jsonl
from search.training.tokenizer import VOCAB

JUDGE_TEMPLATE = "{prompt}{solution}\n="
"""The judge prompt of the tiny generative verifier (``{solution}``: the steps joined by newlines). A line that
starts with ``=`` is one the task never writes, so the question cannot be read as more solution."""
YES = "1"
"""The verdict token for a right solution."""
NO = "0"
"""The verdict token for a wrong one."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m search.training.train_judge", description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True,
                   help="JSONL from python -m search.prm_labels (--rollouts 0 is enough: only the grades are read)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--init", default="tiny-policy", help="policy checkpoint the verifier starts from")
    p.add_argument("--prefixes", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on every proper prefix of a solution, labelled by its exact step label")
    p.add_argument("--pairwise", type=float, default=0.0,
                   help="weight of a pairwise ranking loss between right and wrong whole solutions of one problem "
                        "(on logit(yes) - logit(no)), added to the verdict's cross-entropy; half of each batch is "
                        "then whole problems")
    add_training_args(p, steps=3000, minutes=15.0)
    return p.parse_args(argv)


def render(prompt: str, steps) -> str:
    """The text the verifier reads before its verdict."""
    return JUDGE_TEMPLATE.format(prompt=prompt, solution="\n".join(steps))


def main(argv=None) -> int:
    """CLI: train, save the checkpoint and its training.json; exit 2 with one line on bad input."""
    return run_cli(train, parse_args(argv))


def train(args: argparse.Namespace) -> dict:
    """Train the generative verifier as ``args`` say, write it to ``args.out`` and return its training record."""
    import torch
    from transformers import LlamaForCausalLM

    from search.serving import checkpoint as ckpt

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab = VOCAB
    yes_id, no_id = vocab[YES], vocab[NO]
    train_sols, val_sols = split(read_jsonl(args.labels), args.seed, args.val_share, args.max_solutions)

    def encode(sol, steps) -> list[int]:
        try:
            return [vocab["<s>"]] + [vocab[c] for c in render(sol.prompt, steps)]
        except KeyError as err:
            raise LabError(f"problem {sol.problem_id}: character {err} is not in the tiny tokenizer") from None

    train_set = [(encode(s, s.steps), s.correct, s.problem_id) for s in train_sols]
    if args.prefixes:
        train_set += [(encode(s, s.steps[:i]), bool(s.exact[i - 1]), s.problem_id)
                      for s in train_sols for i in range(1, len(s.steps))]
    val_set = [(encode(s, s.steps), s.correct, s.problem_id) for s in val_sols]
    print(f"solutions: train {len(train_sols)} ({len(train_set)} sequences), val {len(val_sols)}", flush=True)

    policy = LlamaForCausalLM.from_pretrained(ckpt.resolve(args.init))
    model = fresh_or_policy(policy.config, LlamaForCausalLM, policy.model.state_dict(), args.layers, args.width,
                            args.depth)

    def verdict_logits(batch):
        """Logits at each sequence's last position (right-aligned by left padding), and tokens read."""
        width = max(len(ids) for ids, *_ in batch)
        ids = torch.full((len(batch), width), vocab["<pad>"], dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (seq, *_) in enumerate(batch):
            ids[b, width - len(seq):] = torch.tensor(seq)
            attn[b, width - len(seq):] = 1
            pos[b, width - len(seq):] = torch.arange(len(seq))
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -1]
        return out, int(attn.sum())

    wholes = train_set[:len(train_sols)]          # whole solutions come first in train_set
    groups = [g for g in by_problem(wholes, key=lambda item: item[2]) if len({c for _, c, _ in g}) == 2]
    if args.pairwise and not groups:
        raise LabError("--pairwise needs training problems with both right and wrong solutions; the labels have none")
    sequences, problems = Epochs(train_set), Epochs(groups)

    def batches(rng):
        """(sequences, how many leading ones are whole problems for the pairwise loss)."""
        batch = []
        while args.pairwise and len(batch) < args.batch // 2:
            batch += problems.draw(rng)
        n_pairwise = len(batch)
        while len(batch) < args.batch:
            batch.append(sequences.draw(rng))
        return batch, n_pairwise

    def loss_of(drawn):
        batch, n_pairwise = drawn
        logits, tokens = verdict_logits(batch)
        target = torch.tensor([yes_id if correct else no_id for _, correct, _ in batch])
        loss = torch.nn.functional.cross_entropy(logits, target)
        if n_pairwise:
            score = logits[:n_pairwise, yes_id] - logits[:n_pairwise, no_id]
            loss = loss + args.pairwise * pairwise_loss(score, [c for _, c, _ in batch[:n_pairwise]],
                                                        [pid for *_, pid in batch[:n_pairwise]])
        return loss, tokens

    def evaluate() -> dict:
        p_yes, mass = [], []
        for i in range(0, len(val_set), 256):
            probs = verdict_logits(val_set[i:i + 256])[0].softmax(-1)
            p_yes += (probs[:, yes_id] / (probs[:, yes_id] + probs[:, no_id])).tolist()
            mass += (probs[:, yes_id] + probs[:, no_id]).tolist()
        correct = [int(c) for _, c, _ in val_set]
        return {"val_solutions": len(val_set), "val_auroc_outcome": auroc(p_yes, correct),
                "val_auroc_within": within_auroc(p_yes, correct, [pid for *_, pid in val_set]),
                "val_verdict_mass": sum(mass) / len(mass),
                "val_accuracy_at_half": sum((p > 0.5) == bool(c) for p, c in zip(p_yes, correct)) / len(correct)}

    fitted = fit(model, batches, loss_of, evaluate, "val_auroc_within", args)
    return save(model, args.out, args, fitted, template=JUDGE_TEMPLATE, yes_token=YES, no_token=NO,
                train_solutions=len(train_sols), train_sequences=len(train_set))


if __name__ == "__main__":
    sys.exit(main())
