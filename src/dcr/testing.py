"""Tiny random models with a real (character-level) tokenizer, for tests: no download needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcr.models import tiny_model

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


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
