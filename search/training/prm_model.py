"""How the tiny PRM reads a solution and scores it: its token ids, the separator positions it is read at, and its
step probabilities in right-padded batches. ``train_prm`` trains with these, and the studies score pools with them in
process (``search.engine.study_pools``); its vLLM pooling server computes the same numbers from the same input."""
from __future__ import annotations

from search.training.tokenizer import VOCAB
from verifiers.prm import render

SEPARATOR = " "
"""The character after every step, where the PRM is read (one the task never writes)."""


def encode(prompt: str, steps) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Token ids of a solution as the tiny PRM reads it (``<s>`` then ``verifiers.prm.render`` of the prompt and the
    steps, as its server is sent them) and the positions of the separators, one per step (``render`` removes a
    separator inside a step, so there is exactly one per step)."""
    ids = tuple([VOCAB["<s>"]] + [VOCAB[c] for c in render(prompt, steps, SEPARATOR, "\n")])
    return ids, tuple(i for i, t in enumerate(ids) if t == VOCAB[SEPARATOR])


def right_padded(seqs):
    """(input ids, attention mask) of token-id sequences, right-padded with ``<pad>`` to the longest (the causal
    mask keeps padding out of every real position)."""
    import torch

    width = max(len(seq) for seq in seqs)
    ids = torch.full((len(seqs), width), VOCAB["<pad>"], dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, seq in enumerate(seqs):
        ids[b, :len(seq)] = torch.tensor(seq)
        attn[b, :len(seq)] = 1
    return ids, attn


def step_probs(model, encoded, batch: int = 256) -> list[list[float]]:
    """P(right) at every separator of each ``(ids, tags)`` in ``encoded``, from a token-classification model in
    eval mode, in right-padded batches."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(encoded), batch):
            part = encoded[i:i + batch]
            ids, attn = right_padded([seq for seq, _ in part])
            probs = model(input_ids=ids, attention_mask=attn).logits.softmax(-1)[..., 1]
            out += [probs[b, list(tags)].tolist() for b, (_, tags) in enumerate(part)]
    return out
