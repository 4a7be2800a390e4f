"""The character tokenizer of the tiny models, built with the `tokenizers` library and saved as tokenizer.json.

One token per character keeps the arithmetic honest (no digit-group tokens that hide carries) and lets vLLM and
transformers load it like any Hugging Face tokenizer: a BPE model with no merges is exactly a character model, and
the Fuse decoder joins characters back without spaces.
"""
from __future__ import annotations

import json
from pathlib import Path

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
"""Pad, beginning-of-sequence, end-of-sequence and unknown, with ids 0..3."""
CHARS = list("0123456789+-*=:\nQA ")
"""Every character the arithmetic task writes (plus a space, so hand-written prompts do not fail)."""
VOCAB = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
"""Token id of every special token and character: the tokenizer's vocabulary, for the trainers' own encoding."""


def build_tokenizer():
    """A fast tokenizer: one token per character, ``<s>`` prepended to every encoded text."""
    from tokenizers import Tokenizer, decoders, models, processors

    tok = Tokenizer(models.BPE(vocab=dict(VOCAB), merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", VOCAB["<s>"])]
    )
    tok.add_special_tokens(SPECIAL)
    return tok


def save_tokenizer(out_dir: Path) -> dict[str, int]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json; return the special-token ids."""
    tok = build_tokenizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "model_max_length": 256,
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return {name: tok.token_to_id(name) for name in SPECIAL}
