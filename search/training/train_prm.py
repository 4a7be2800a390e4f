"""Train the tiny process reward model: a Llama token classifier that scores each step of an arithmetic solution.

    python -m search.prm_labels --problems 2500 --out prm_labels.jsonl      # Monte-Carlo labels (about 8 minutes)
    python -m search.training.train_prm --labels prm_labels.jsonl --out search/tiny/prm   # at most --minutes (12)

The model is the tiny policy's transformer with a fresh two-class head (``LlamaForTokenClassification``): a PRM
starts from the policy it judges, as real ones do, so it begins with the policy's sense of arithmetic. Its input is
``verifiers.prm.render`` of the prompt and the steps, each step followed by the separator (a space, a character the
task never writes). One model class makes every verifier family of the tiny world, by its label (``--label``):

- ``hard`` / ``soft``: a PRM on Monte-Carlo labels (Math-Shepherd), cross-entropy at every separator;
- ``exact``: a PRM on the task's exact step labels (the analogue of PRM800K's human step labels);
- ``outcome``: an outcome reward model, one label per solution (its final answer graded), read at the last
  separator only.

and by its objective (``--objective``): ``pointwise`` cross-entropy on each label, or ``pairwise``, a ranking loss
inside a problem: for every right and wrong solution of one problem in a batch, ``-log sigmoid(s_right -
s_wrong)`` on the solutions' scores (the logit of the last separator), so the model learns to order a problem's
candidates, which is all best-of-k reads. Labels with no rollouts (``python -m search.prm_labels --rollouts 0``)
serve ``exact`` and ``outcome``.

Training stops at ``--steps`` or ``--minutes``, whichever comes first, and keeps the weights of the validation
step with the best held-out score (``--select``: ``step``, the AUROC of every step's score against the exact step
labels, or ``within``, the within-problem AUROC of the solution score against the final answer's grade; the labels
are a few thousand solutions, so later epochs overfit). The checkpoint is saved
in Hugging Face format, so vLLM serves it as a pooling model (token classification) as it
would any PRM.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from search.analysis.verifier_metrics import auroc, within_auroc
from search.contracts import LabError
from search.training.fit import (Epochs, add_training_args, by_problem, fit, fresh_or_policy, pairwise_loss,
                                 run_cli, save, split)
from search.training.labels import read_jsonl
from search.training.prm_model import SEPARATOR, encode, right_padded, step_probs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True, help="JSONL from python -m search.prm_labels")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--init", default="tiny-policy", help="policy checkpoint whose transformer starts the PRM")
    p.add_argument("--label", choices=("soft", "hard", "exact", "outcome"), default="hard",
                   help="training target: Monte-Carlo hard or soft step labels (hard: held-out AUROC 0.79 against "
                        "0.71 for soft on the shipped labels), exact step labels, or the outcome only (an ORM)")
    p.add_argument("--objective", choices=("pointwise", "pairwise"), default="pointwise",
                   help="pointwise cross-entropy, or a pairwise ranking loss between right and wrong solutions of "
                        "one problem")
    p.add_argument("--select", choices=("step", "within"), default="step",
                   help="checkpoint kept: best step-level AUROC against the exact labels, or best within-problem "
                        "AUROC of the solution score")
    add_training_args(p, steps=2000, minutes=12.0)
    return p.parse_args(argv)


@dataclass(frozen=True)
class Example:
    """One labelled solution as the model reads it."""

    problem_id: str
    """The problem it solves (pairs and within-problem AUROC are formed inside a problem)."""
    ids: tuple[int, ...]
    """Token ids: ``<s>`` then the rendered prompt and steps."""
    tags: tuple[int, ...]
    """Positions of the separators, one per step (the last one's score is the solution's score)."""
    train_tags: tuple[int, ...]
    """The positions the pointwise loss reads: every separator, or only the last for outcome labels."""
    target: tuple[float, ...]
    """The label at each of ``train_tags``."""
    exact: tuple[int, ...]
    """The exact step labels (validation only, unless they are the target)."""
    correct: bool
    """Whether the solution's final answer is right."""


def _example(sol, label: str) -> Example:
    """The model's view of one labelled solution under the chosen label."""
    problem_id = sol.problem_id
    ids, tags = encode(sol.prompt, sol.steps)
    if len(tags) != len(sol.steps):
        raise LabError(f"a step of problem {problem_id} contains the separator {SEPARATOR!r}")
    if label == "outcome":
        return Example(problem_id, ids, tags, tags[-1:], (float(sol.correct),), sol.exact, sol.correct)
    target = {"soft": sol.soft, "hard": sol.hard, "exact": sol.exact}[label]
    return Example(problem_id, ids, tags, tags, tuple(float(v) for v in target), sol.exact, sol.correct)


def main(argv=None) -> int:
    """CLI: train, save the checkpoint and its training.json; exit 2 with one line on bad input."""
    return run_cli(train, parse_args(argv))


def train(args: argparse.Namespace) -> dict:
    """Train one verifier as ``args`` say, write it to ``args.out`` and return its training record."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    from search.serving import checkpoint as ckpt

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    solutions = read_jsonl(args.labels)
    if args.label in ("soft", "hard") and any(not sol.hard for sol in solutions):
        raise LabError(f"--label {args.label} needs Monte-Carlo labels, but {args.labels} was made without "
                       f"rollouts; use --label exact or --label outcome, or relabel with --rollouts 8")
    train_sols, val_sols = split(solutions, args.seed, args.val_share, args.max_solutions)
    train_set = [_example(sol, args.label) for sol in train_sols]
    val_set = [_example(sol, args.label) for sol in val_sols]
    print(f"solutions: train {len(train_set)}, val {len(val_set)}", flush=True)
    groups = [g for g in by_problem(train_set) if len({ex.correct for ex in g}) == 2]
    if args.objective == "pairwise" and not groups:
        raise LabError(f"--objective pairwise needs training problems with both right and wrong solutions; "
                       f"{args.labels} has none (sample more solutions per problem)")

    policy = LlamaForCausalLM.from_pretrained(ckpt.resolve(args.init))
    config = policy.config
    config.architectures = ["LlamaForTokenClassification"]
    config.num_labels = 2
    config.id2label, config.label2id = {0: "wrong", 1: "right"}, {"wrong": 0, "right": 1}
    model = fresh_or_policy(config, LlamaForTokenClassification, policy.model.state_dict(), args.layers, args.width,
                            args.depth)

    epochs = Epochs(train_set if args.objective == "pointwise" else groups)

    def batches(rng):
        """Shuffled solutions (pointwise) or whole shuffled problems with right and wrong solutions (pairwise)."""
        batch = []
        while len(batch) < args.batch:
            item = epochs.draw(rng)
            batch += [item] if args.objective == "pointwise" else item
        return batch

    def loss_of(batch):
        ids, attn = right_padded([ex.ids for ex in batch])
        logits = model(input_ids=ids, attention_mask=attn).logits
        if args.objective == "pointwise":
            rows = torch.tensor([b for b, ex in enumerate(batch) for _ in ex.train_tags])
            cols = torch.tensor([t for ex in batch for t in ex.train_tags])
            target = torch.tensor([y for ex in batch for y in ex.target])
            logp = logits[rows, cols].log_softmax(-1)
            loss = -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()
        else:
            last = logits[torch.arange(len(batch)), torch.tensor([ex.tags[-1] for ex in batch])]
            loss = pairwise_loss(last[:, 1] - last[:, 0], [ex.correct for ex in batch],
                                 [ex.problem_id for ex in batch])
        return loss, int(attn.sum())

    def evaluate() -> dict:
        steps, exact, solution, correct, groups_, sq_errors = [], [], [], [], [], []
        for ex, probs in zip(val_set, step_probs(model, [(ex.ids, ex.tags) for ex in val_set])):
            at = dict(zip(ex.tags, probs))
            steps += probs
            exact += ex.exact
            solution.append(probs[-1])
            correct.append(int(ex.correct))
            groups_.append(ex.problem_id)
            sq_errors += [(at[t] - y) ** 2 for t, y in zip(ex.train_tags, ex.target)]
        return {"val_steps": len(steps), "val_auroc_exact": auroc(steps, exact),
                "val_auroc_outcome": auroc(solution, correct),
                "val_auroc_within": within_auroc(solution, correct, groups_),
                "val_brier_target": sum(sq_errors) / max(1, len(sq_errors))}

    fitted = fit(model, batches, loss_of, evaluate, "val_auroc_exact" if args.select == "step" else "val_auroc_within",
                 args)
    # the solutions the loss read: a pairwise objective uses only problems with both right and wrong solutions
    used = len(train_set) if args.objective == "pointwise" else sum(len(g) for g in groups)
    return save(model, args.out, args, fitted, separator=SEPARATOR, train_solutions=used,
                labelled_solutions=len(train_set))


if __name__ == "__main__":
    sys.exit(main())
