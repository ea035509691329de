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
