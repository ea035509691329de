"""Teacher-forced sequence log-probabilities (fp32), the basis of refusal probability and MC scoring."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

LOGITS_BUDGET = 1 << 30  # bytes of logits per forward in continuation_logprobs, at the LM head's dtype


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
    tokens are exactly ``tokenizer(continuation)``; log-softmax is taken in fp32. Logits are computed only
    for the positions that predict continuation tokens (``logits_to_keep``), and a batch is split further
    when even those would exceed :data:`LOGITS_BUDGET` (Gemma-3's 262k-token vocabulary: full logits of 64
    MMLU prompts are about 20 GB).
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    out = torch.empty(len(contexts), dtype=torch.float32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    head = model.get_output_embeddings().weight
    position_bytes = head.shape[0] * head.element_size()  # one position's logits, in the LM head's dtype
    for start in range(0, len(contexts), batch_size):
        rows = []
        for c, y in zip(contexts[start:start + batch_size], continuations[start:start + batch_size]):
            a = tokenizer(c, add_special_tokens=add_special_tokens)["input_ids"]
            b = tokenizer(y, add_special_tokens=False)["input_ids"]
            if not b:
                raise ValueError(f"continuation {y!r} tokenises to nothing")
            if not a:  # the first continuation token would be scored from position -1 (the last pad)
                raise ValueError(f"context {c!r} tokenises to nothing; pass add_special_tokens=True to start with BOS")
            rows.append((a + b, len(a)))
        for lo, hi in _within_budget([(n, len(seq)) for seq, n in rows], position_bytes):
            out[start + lo:start + hi] = _score_rows(model, rows[lo:hi], pad)
    return out


def _within_budget(spans: list[tuple[int, int]], position_bytes: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) row ranges whose kept logits (rows x union of scored positions x
    ``position_bytes``) fit :data:`LOGITS_BUDGET`; ``spans`` holds each row's (continuation start, end) token
    positions. A row alone always forms a range."""
    out, lo = [], 0
    while lo < len(spans):
        hi, (first, last) = lo + 1, spans[lo]
        while hi < len(spans):
            first, last = min(first, spans[hi][0]), max(last, spans[hi][1])
            if (hi + 1 - lo) * (last - first) * position_bytes > LOGITS_BUDGET:
                break
            hi += 1
        out.append((lo, hi))
        lo = hi
    return out


def _score_rows(model: Any, rows: list[tuple[list[int], int]], pad: int) -> torch.Tensor:
    """Summed continuation log-probabilities of right-padded rows (token ids, continuation start)."""
    ids, mask = _right_padded([seq for seq, _ in rows], pad)  # right padding: position ids stay 0..len-1
    first = min(n for _, n in rows) - 1  # position first predicts token first + 1
    last = max(len(seq) for seq, _ in rows) - 1
    keep = torch.arange(first, last)
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                   logits_to_keep=keep.to(model.device)).logits
    sums = torch.empty(len(rows), dtype=torch.float32)
    for i, (seq, n) in enumerate(rows):
        lg = logits[i, n - 1 - first:len(seq) - 1 - first].float()
        tgt = ids[i, n:len(seq)].to(lg.device)
        sums[i] = torch.log_softmax(lg, dim=-1).gather(-1, tgt[:, None]).sum().cpu()
    return sums


def prefix_cached_logprobs(model: Any, tok: Any, context: str, continuations: list[str],
                           add_special_tokens: bool = False) -> torch.Tensor:
    """Same sums as ``dcr.scoring.continuation_logprobs`` for one context and many continuations, but the
    context is run once and its KV cache shared (about 5x less compute for short refusal phrases)."""
    return prefix_cached_logprobs_many(model, tok, [context], continuations, add_special_tokens)[0]


def _right_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def length_buckets(lengths: Sequence[int]) -> list[list[int]]:
    """Indices grouped by length, shortest first; a bucket holds lengths up to twice its shortest, so padding
    each bucket to its longest wastes little (the paper's 31 refusal phrases: 527 -> 213 padded tokens)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[i] <= 2 * lengths[buckets[-1][0]]:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


@torch.no_grad()
def prefix_cached_logprobs_many(model: Any, tok: Any, contexts: Sequence[str], continuations: list[str],
                                add_special_tokens: bool = False, contexts_per_call: int = 4) -> torch.Tensor:
    """Log P(continuation | context) for every context x continuation pair, shape ``(len(contexts), k)``, fp32.

    ``contexts_per_call`` contexts run together (left-padded, explicit position ids); their KV cache is computed
    once and shared by all ``k`` continuations, which run in :func:`length_buckets` (one copy of the cache per
    bucket) so that short phrases are not padded to the longest. The log-softmax is taken in fp32.
    """
    conts = [tok(y, add_special_tokens=False)["input_ids"] for y in continuations]
    if not all(conts):
        raise ValueError("a continuation tokenises to nothing")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out = torch.empty(len(contexts), len(conts))
    for start in range(0, len(contexts), contexts_per_call):
        ctx = [tok(c, add_special_tokens=add_special_tokens)["input_ids"]
               for c in contexts[start:start + contexts_per_call]]
        ids, mask = _right_padded([c[::-1] for c in ctx], pad)  # reversed rows, flipped back: left padding
        ids, mask = ids.flip(1), mask.flip(1)
        dev = model.device
        first = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=(mask.cumsum(1) - 1).clamp(
            min=0).to(dev), use_cache=True, logits_to_keep=1)
        head = torch.log_softmax(first.logits[:, -1].float(), dim=-1).cpu()
        buckets = length_buckets([len(c) for c in conts])
        for b, cols in enumerate(buckets):
            cache = first.cache if b == len(buckets) - 1 else copy.deepcopy(first.cache)
            rest = _continuations_given_cache(model, cache, mask, [conts[j] for j in cols], pad)
            out[start:start + len(ctx), cols] = head[:, [conts[j][0] for j in cols]] + rest
    return out


def _continuations_given_cache(model: Any, cache: Any, mask: torch.Tensor, conts: list[list[int]],
                               pad: int) -> torch.Tensor:
    """Sum of log P(tokens 2.. of each continuation) for each cached context row, shape ``(b, k)``."""
    b, k, dev = mask.shape[0], len(conts), model.device
    cont_ids, cont_mask = _right_padded(conts, pad)
    cache.batch_repeat_interleave(k)
    ids2, mask2 = cont_ids.repeat(b, 1), torch.cat([mask.repeat_interleave(k, 0), cont_mask.repeat(b, 1)], 1)
    pos2 = mask.sum(1).repeat_interleave(k)[:, None] + torch.arange(ids2.shape[1])[None]
    logits = model(input_ids=ids2.to(dev), attention_mask=mask2.to(dev), position_ids=pos2.to(dev),
                   cache=cache).logits[:, :-1]
    rest = torch.empty(b * k)
    tgt, keep = ids2[:, 1:].to(dev), cont_mask.repeat(b, 1)[:, 1:]
    for r in range(0, b * k, 32):  # fp32 log-softmax of 32 rows at a time
        lg = logits[r:r + 32].float()
        lp = lg.gather(-1, tgt[r:r + 32, :, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)
        rest[r:r + 32] = (lp.cpu() * keep[r:r + 32]).sum(1)
    return rest.view(b, k)
