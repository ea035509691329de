"""Peak-memory estimate of a refine run from the model's config, before any weight is loaded.

A run that would not fit refuses with one line naming the estimate, its parts and the settings that would fit,
instead of being killed by the kernel mid-step (which leaves its manifest "running"). The estimate is an
accounting of what the stage holds, with two constants fitted on measured peaks (BENCHMARKS.md, "Qwen2.5-Coder
... Refine memory"): parameters at their dtypes, gradients and two AdamW moments of every trainable parameter,
bf16 autocast copies of the trainable weights, saved activations per token and block, one NLL chunk's logits,
and a fixed process overhead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

GB = 1e9
OVERHEAD = 2.0 * GB  # torch, tokenizer, data and allocator slack: fitted on the measured 1.5B peak (BENCHMARKS.md)


def _dims(config: Any) -> dict[str, int]:
    c = getattr(config, "text_config", None) or config
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return {"h": c.hidden_size, "i": c.intermediate_size, "L": c.num_hidden_layers, "V": c.vocab_size,
            "heads": heads, "kv": getattr(c, "num_key_value_heads", heads) * head_dim, "q": heads * head_dim,
            "tied": bool(getattr(c, "tie_word_embeddings", False))}


def _block_linears(d: dict[str, int]) -> list[tuple[int, int]]:
    """(in, out) of every linear of one decoder block."""
    h, i = d["h"], d["i"]
    return [(h, d["q"]), (h, d["kv"]), (h, d["kv"]), (d["q"], h), (h, i), (h, i), (i, h)]


def estimate(cfg: Any, config: Any, longest: int, frozen_bytes: int, bf16: bool) -> dict[str, float]:
    """Bytes by part of a refine run of ``cfg`` on a model of ``config`` whose longest training prompt has
    ``longest`` tokens; ``frozen_bytes`` per frozen weight (2 for bf16); ``bf16``: trained under bf16 autocast."""
    d = _dims(config)
    layer = cfg.layer if cfg.layer is not None else d["L"] // 2
    block = sum(a * b + b for a, b in _block_linears(d)) + 2 * d["h"]
    emb = d["V"] * d["h"]
    truncated = cfg.truncated_load and cfg.nll_weight == 0 and cfg.truncate_forward
    blocks_held = layer + 1 if truncated else d["L"]
    trained_blocks = layer + 1
    if cfg.lora:
        trainable = trained_blocks * sum(cfg.lora_r * (a + b) for a, b in _block_linears(d))
        weights = (blocks_held * block + emb * (1 if d["tied"] else 2)) * frozen_bytes + trainable * 4
    else:
        train_emb = not d["tied"] or cfg.tied_embeddings == "untie"
        trainable = trained_blocks * block + (emb if train_emb else 0)
        frozen_linear = (blocks_held - trained_blocks) * block
        head = 0 if d["tied"] and not train_emb else emb
        weights = trainable * 4 + frozen_linear * frozen_bytes + (0 if train_emb else emb * 4) + head * frozen_bytes
    tokens = min(cfg.micro_batch or cfg.batch_size, cfg.batch_size) * min(cfg.max_length, longest)
    with_grad = trained_blocks if truncated else d["L"]
    per_token_block = (24 * d["h"] + 10 * d["i"] + 6 * d["heads"] * min(cfg.max_length, longest)) * (1 if bf16 else 2)
    if cfg.gradient_checkpointing:
        activations = tokens * (with_grad * 4 * d["h"] + per_token_block)
    else:
        activations = tokens * with_grad * per_token_block
    logits = 0 if cfg.nll_weight == 0 else min(cfg.nll_chunk, tokens) * d["V"] * 10
    # bf16 casts of the trainable weights live from the forward to the backward unless each block is recomputed
    copies = trainable * 2 if bf16 and not cfg.gradient_checkpointing else 0
    return {"weights": weights, "gradients+AdamW": trainable * 12, "autocast copies": copies,
            "activations": activations, "NLL logits": logits, "overhead": OVERHEAD}


def alternatives(cfg: Any) -> list[tuple[str, Any]]:
    """Settings that lower memory, as (flag text, changed config), cheapest change in compute first."""
    out = []
    if not cfg.micro_batch or cfg.micro_batch > 8:
        out.append(("--micro-batch 8", dataclasses.replace(cfg, micro_batch=8)))
    if not cfg.gradient_checkpointing:
        out.append(("--gradient-checkpointing", dataclasses.replace(cfg, gradient_checkpointing=True)))
        out.append(("--micro-batch 8 --gradient-checkpointing",
                    dataclasses.replace(cfg, micro_batch=min(cfg.micro_batch or 8, 8), gradient_checkpointing=True)))
    if not cfg.lora:
        out.append(("--lora", dataclasses.replace(cfg, lora=True)))
    return out


def available_bytes() -> float:
    """Memory this process may use: MemAvailable, or the cgroup limit when that is lower."""
    avail = float("inf")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            avail = min(avail, int(limit))
    except OSError:
        pass
    return avail


def describe(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v / GB:.1f}" for k, v in parts.items() if v >= 0.05 * GB)


def longest_prompt(cfg: Any) -> int:
    """Tokens of the longest training prompt under the chat template (after ``max_length`` truncation)."""
    from dcr.models import load_tokenizer
    from dcr.prompts import format_prompt
    from dcr.refine.data import refine_data

    data = refine_data(cfg)
    tok = load_tokenizer(cfg.model)
    prompts, _ = data.train_items()
    lengths = tok([format_prompt(tok, p, cfg.template) for p in prompts], add_special_tokens=False)["input_ids"]
    return min(cfg.max_length, max(len(ids) for ids in lengths))


def check_fits(cfg: Any, limit: float | None = None) -> dict[str, float]:
    """The estimate of ``cfg``; ConfigError naming the settings that fit when it exceeds ``limit`` bytes
    (default: ``cfg.memory_limit_gb``, else what the machine has available)."""
    import torch

    from dcr.config import check
    from dcr.models import model_config
    from dcr.refine.stage import autocast_dtype, frozen_dtype

    config = model_config(cfg.model)
    longest = longest_prompt(cfg)
    limit = limit or (cfg.memory_limit_gb * GB if cfg.memory_limit_gb else available_bytes())

    def total(c: Any) -> tuple[float, dict[str, float]]:
        bf16 = autocast_dtype(c.dtype, c.device) == torch.bfloat16
        parts = estimate(c, config, longest, 2 if frozen_dtype(c) == torch.bfloat16 else 4, bf16)
        return sum(parts.values()), parts

    need, parts = total(cfg)
    if need > limit:
        fits = [f"{flag} ({total(alt)[0] / GB:.1f} GB)" for flag, alt in alternatives(cfg) if total(alt)[0] <= limit]
        check(False, f"refine of {cfg.model} needs about {need / GB:.1f} GB ({describe(parts)}; batch "
                     f"{cfg.batch_size}, longest prompt {longest} tokens) but {limit / GB:.1f} GB is available. Fix: "
                     + (f"pass {' or '.join(fits)}" if fits else "use a smaller model or batch")
                     + ", or --no-memory-check to try anyway")
    return parts
