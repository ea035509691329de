"""Prompt sets and tokenisation shared by the probe verbs, and model loading for checkpoints (HF or PEFT)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from dcr.data import PromptRecord, load_benchmark
from dcr.errors import ModelError
from dcr.models import contiguous_head
from dcr.prompts import adds_special_tokens, format_prompt

# group name -> benchmark it is drawn from (paper 4.2 / 7.3: XSTest safe, XSTest unsafe, Alpaca)
GROUP_SOURCES = {"s-toxic": "xstest-safe", "toxic": "xstest-unsafe", "normal": "i-alpaca"}
GROUP_LABELS = {"s-toxic": "S-Toxic", "toxic": "Toxic", "normal": "Normal"}


def load_groups(n_per_group: int, seed: int = 0, data_dir: str | None = None) -> dict[str, list[PromptRecord]]:
    """``{group: records}`` for S-toxic, toxic and normal, ``n_per_group`` seeded prompts each."""
    return {g: load_benchmark(src, data_dir, limit=n_per_group, seed=seed) for g, src in GROUP_SOURCES.items()}


def encode(tok: Any, prompts: list[str], template: str = "auto", max_length: int = 256,
           device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Format with ``dcr.prompts.format_prompt`` and tokenise, left-padded: ``input_ids, attention_mask [B, T]``."""
    texts = [format_prompt(tok, p, template) for p in prompts]
    side = tok.truncation_side
    tok.truncation_side = "left"  # keep the end of long prompts (where the answer starts)
    try:
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                  add_special_tokens=adds_special_tokens(tok, template))
    finally:
        tok.truncation_side = side
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def _step(path: Path) -> tuple[int, str]:
    nums = re.findall(r"\d+", path.name)
    return (int(nums[-1]) if nums else -1, path.name)


def _is_checkpoint(path: Path) -> bool:
    return any((path / f).exists() for f in ("config.json", "adapter_config.json", "model/config.json"))


def expand_checkpoints(paths: list[str]) -> list[Path]:
    """Checkpoint dirs in order: each path as given, or (for a dir of checkpoints) its subdirs sorted by step."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise ModelError(f"{path}: checkpoint directory not found. Fix: pass existing directories")
        if _is_checkpoint(path):
            out.append(path)
            continue
        subs = sorted((p for p in path.iterdir() if p.is_dir() and _is_checkpoint(p)), key=_step)
        if not subs:
            raise ModelError(f"{path}: neither a model/adapter directory nor a directory of checkpoint subdirs. "
                             "Fix: pass HF directories (config.json) or PEFT adapters (adapter_config.json)")
        out.extend(subs)
    return out


def load_checkpoint(path: str | Path, base: str | None, dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) from an HF dir, a dcr stage dir or a PEFT adapter dir (merged into its base)."""
    from dcr.models import load_model, load_tokenizer, pick_device, pick_dtype

    path = Path(path)
    if not (path / "adapter_config.json").exists():
        return load_model(str(path), dtype=dtype, device=device)
    from peft import AutoPeftModelForCausalLM, PeftConfig

    base_ref = base or PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    dev = pick_device(device)
    try:
        model = AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=pick_dtype(dtype, dev))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: could not load the PEFT adapter on its base {base_ref!r} ({exc}). "
                         "Fix: make the base model available at that path") from None
    model = contiguous_head(model.merge_and_unload().to(dev).eval())
    tok_src = str(path) if (path / "tokenizer_config.json").exists() else str(base_ref)
    return model, load_tokenizer(tok_src)
