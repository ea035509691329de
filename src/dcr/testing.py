"""Tiny random models with a real (character-level) tokenizer, for tests: no download needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def tiny_model(family: str = "llama", seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """(model, config): a tiny random model of a real architecture (llama, qwen2, gemma3)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    base = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if family == "gemma3":
        base.update(head_dim=8, sliding_window=64, model_type="gemma3_text")
        family = "gemma3_text"
    base.update(overrides)
    base.pop("model_type", None)
    cfg = AutoConfig.for_model(family, **base)
    model = AutoModelForCausalLM.from_config(cfg)
    model.eval()
    return model, cfg


def tiny_tokenizer(chat_template: bool = True) -> Any:
    """A character-level PreTrainedTokenizerFast over printable ASCII (vocab < 128)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tok.padding_side = "left"
    if chat_template:
        tok.chat_template = CHATML
    return tok


def tiny_lm(family: str = "llama", seed: int = 0, chat_template: bool = True, **overrides: Any) -> tuple[Any, Any]:
    """(model, tokenizer): a tiny random ``family`` model (llama, qwen2, gemma3) and a char tokenizer."""
    tok = tiny_tokenizer(chat_template)
    overrides.setdefault("vocab_size", 128)
    overrides.setdefault("pad_token_id", tok.pad_token_id)
    overrides.setdefault("bos_token_id", tok.bos_token_id)
    overrides.setdefault("eos_token_id", tok.eos_token_id)
    model, _ = tiny_model(family, seed=seed, **overrides)
    return model, tok


def save_tiny(path: str | Path, family: str = "llama", seed: int = 0, chat_template: bool = True) -> Path:
    """Write a tiny model + tokenizer as an HF directory that every ``dcr`` verb accepts by path."""
    model, tok = tiny_lm(family, seed=seed, chat_template=chat_template)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
