"""Greedy batched decoding of already-formatted texts (the guard judge and the chat server share it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dcr.generate import greedy_batch


@torch.no_grad()
def greedy_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_new_tokens: int = 16,
    add_special_tokens: bool = False,
    batch_size: int = 8,
) -> list[str]:
    """Greedy continuations of ``texts`` (full model inputs, template already applied), in input order.

    Batches are formed from length-sorted texts with left padding; special tokens are skipped when decoding.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    outs: dict[int, str] = {}
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start:start + batch_size]
        batch = greedy_batch(model, tokenizer, [texts[i] for i in idx], max_new_tokens, add_special_tokens)
        outs.update(zip(idx, (d.text for d in batch)))
    return [outs[i] for i in range(len(texts))]
