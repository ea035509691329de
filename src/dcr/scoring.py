"""Teacher-forced sequence log-probabilities (fp32), the basis of refusal probability and MC scoring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    batch_size: int = 16,
    add_special_tokens: bool = False,
) -> torch.Tensor:
    """Sum of log P(continuation tokens | context) for each pair, shape ``(N,)``, fp32.

    Context and continuation are tokenised separately and concatenated, so the continuation's
    tokens are exactly ``tokenizer(continuation)``; log-softmax is taken in fp32.
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    out = torch.empty(len(contexts), dtype=torch.float32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(contexts), batch_size):
        ctx = contexts[start:start + batch_size]
        cont = continuations[start:start + batch_size]
        seqs, spans = [], []
        for c, y in zip(ctx, cont):
            a = tokenizer(c, add_special_tokens=add_special_tokens)["input_ids"]
            b = tokenizer(y, add_special_tokens=False)["input_ids"]
            if not b:
                raise ValueError(f"continuation {y!r} tokenises to nothing")
            if not a:  # the first continuation token would be scored from position -1 (the last pad)
                raise ValueError(f"context {c!r} tokenises to nothing; pass add_special_tokens=True to start with BOS")
            seqs.append(a + b)
            spans.append((len(a), len(a) + len(b)))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: position ids stay 0..len-1 without help
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for i, (lo, hi) in enumerate(spans):
            pos = torch.arange(lo, hi)
            tgt = ids[i, pos]
            out[start + i] = logp[i, pos - 1, tgt].sum()
    return out


@torch.no_grad()
def prefix_cached_logprobs(model: Any, tok: Any, context: str, continuations: list[str],
                           add_special_tokens: bool = False) -> torch.Tensor:
    """Same sums as ``dcr.scoring.continuation_logprobs`` for one context and many continuations, but the
    context is run once and its KV cache shared (about 5x less compute for short refusal phrases)."""
    ctx = tok(context, add_special_tokens=add_special_tokens)["input_ids"]
    conts = [tok(y, add_special_tokens=False)["input_ids"] for y in continuations]
    if not all(conts):
        raise ValueError("a continuation tokenises to nothing")
    dev = model.device
    out = model(input_ids=torch.tensor([ctx], device=dev), use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
    cache = out.past_key_values
    k, width = len(conts), max(len(c) for c in conts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((k, width), pad, dtype=torch.long)
    mask = torch.zeros((k, len(ctx) + width), dtype=torch.long)
    mask[:, : len(ctx)] = 1
    for i, c in enumerate(conts):  # right padding: positions continue from len(ctx)
        ids[i, : len(c)] = torch.tensor(c)
        mask[i, len(ctx): len(ctx) + len(c)] = 1
    cache.batch_repeat_interleave(k)
    logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), cache=cache).logits
    logp = torch.log_softmax(logits.float(), dim=-1).cpu()
    sums = torch.empty(k, dtype=torch.float32)
    for i, c in enumerate(conts):
        pos = torch.arange(1, len(c))
        sums[i] = first[c[0]] + logp[i, pos - 1, ids[i, pos]].sum()
    return sums
