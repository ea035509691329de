"""Teacher-forced sequence log-probabilities (fp32), the basis of refusal probability and MC scoring."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from dcr.greedy import full_attention_only

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
    """Log P(continuation | context) for every context x continuation pair, shape ``(len(contexts), k)``, fp32:
    :func:`shared_context_logprobs` with the same ``k`` continuations for every context."""
    if not all(tok(y, add_special_tokens=False)["input_ids"] for y in continuations):
        raise ValueError("a continuation tokenises to nothing")
    rows = shared_context_logprobs(model, tok, contexts, [continuations] * len(contexts), add_special_tokens,
                                   contexts_per_call)
    return torch.stack(rows) if rows else torch.empty(0, len(continuations))


@torch.no_grad()
def shared_context_logprobs(model: Any, tok: Any, contexts: Sequence[str], options: Sequence[Sequence[str]],
                            add_special_tokens: bool = False, contexts_per_call: int = 8) -> list[torch.Tensor]:
    """Log P(option | context) for each option of each context (one fp32 tensor per context), the sums of
    :func:`continuation_logprobs` at a fraction of its compute: each context runs once.

    ``contexts_per_call`` contexts run together (left-padded, explicit position ids). An option's first token is
    read from its context's last logits. Options of two or more tokens run after the cached context: where every
    layer is full attention, as one token trie per context in one forward (:func:`_tails_by_tries`); otherwise in
    :func:`length_buckets` on copies of their context's cache row (:func:`_tails_by_buckets`); either way split so
    that their logits fit :data:`LOGITS_BUDGET`. A question scored by single-token options (MMLU's letters) costs
    one forward of its context instead of one per option.
    """
    if len(contexts) != len(options):
        raise ValueError(f"{len(contexts)} contexts but {len(options)} option lists")
    opts = [[tok(y, add_special_tokens=False)["input_ids"] for y in row] for row in options]
    for c, row, ids in zip(contexts, options, opts):
        if not all(ids):
            raise ValueError(f"an option of {row!r} tokenises to nothing (context {c[:60]!r})")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    vocab = model.get_output_embeddings().weight
    position_bytes = vocab.shape[0] * vocab.element_size()
    out = [torch.empty(len(row)) for row in opts]
    tree = full_attention_only(model)
    for start in range(0, len(contexts), contexts_per_call):
        ctx = [tok(c, add_special_tokens=add_special_tokens)["input_ids"]
               for c in contexts[start:start + contexts_per_call]]
        if not all(ctx):
            raise ValueError("a context tokenises to nothing; pass add_special_tokens=True to start with BOS")
        ids, mask = _right_padded([c[::-1] for c in ctx], pad)  # reversed rows, flipped back: left padding
        ids, mask = ids.flip(1), mask.flip(1)
        dev = model.device
        first = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=(mask.cumsum(1) - 1).clamp(
            min=0).to(dev), use_cache=True, logits_to_keep=1)
        head = torch.log_softmax(first.logits[:, -1].float(), dim=-1).cpu()
        tails = []  # (context row, option index, token ids) of options longer than one token
        for r in range(len(ctx)):
            for j, y in enumerate(opts[start + r]):
                out[start + r][j] = head[r, y[0]]
                if len(y) > 1:
                    tails.append((r, j, y))
        if tails:
            score = _tails_by_tries if tree else _tails_by_buckets
            for (r, j, _), v in zip(tails, score(model, first.cache, mask, tails, pad, position_bytes)):
                out[start + r][j] += v
    return out


def _within_logits_budget(sizes: Sequence[int], position_bytes: int) -> list[list[int]]:
    """Indices of ``sizes`` (logit positions per row) in consecutive groups whose logits (rows x largest size x
    ``position_bytes``) fit :data:`LOGITS_BUDGET`; a row alone always forms a group."""
    out: list[list[int]] = []
    widest = 0
    for i, n in enumerate(sizes):
        if out and (len(out[-1]) + 1) * max(widest, n) * position_bytes <= LOGITS_BUDGET:
            out[-1].append(i)
            widest = max(widest, n)
        else:
            out.append([i])
            widest = n
    return out


def _caches_for(cache: Any, parts: list[list[int]], rows: int, device: Any) -> list[Any]:
    """One cache per part holding that part's context rows, in its order (a row may repeat): ``cache`` itself when
    the only part is all ``rows`` in order; otherwise copies, the last part taking ``cache``."""
    if parts == [list(range(rows))]:
        return [cache]
    out = []
    for n, part in enumerate(parts):
        mine = cache if n == len(parts) - 1 else copy.deepcopy(cache)
        mine.reorder_cache(torch.tensor(part, device=device))
        out.append(mine)
    return out


def _tails_by_buckets(model: Any, cache: Any, mask: torch.Tensor, tails: list[tuple[int, int, list[int]]],
                      pad: int, position_bytes: int) -> torch.Tensor:
    """Sum of log P(tokens 2.. | context row) per (row, option, ids) of ``tails``: tails of similar length
    (:func:`length_buckets`) run together within the logits budget, each on a copy of its context's cache row
    (any attention layout)."""
    parts = [[bucket[i] for i in group] for bucket in length_buckets([len(t[2]) for t in tails])
             for group in _within_logits_budget([len(tails[i][2]) for i in bucket], position_bytes)]
    rows = [[tails[i][0] for i in part] for part in parts]
    rest = torch.empty(len(tails))
    for part, own, part_cache in zip(parts, rows, _caches_for(cache, rows, mask.shape[0], model.device)):
        rest[part] = _tails_given_cache(model, part_cache, mask[own], [tails[i][2] for i in part], pad)
    return rest


def _tails_by_tries(model: Any, cache: Any, mask: torch.Tensor, tails: list[tuple[int, int, list[int]]],
                    pad: int, position_bytes: int) -> torch.Tensor:
    """Sum of log P(tokens 2.. | context row) per (row, option, ids) of ``tails``: each row's tails as one token
    trie (:func:`_tails_as_trees`), rows grouped within the logits budget. Needs full attention in every layer
    (``dcr.greedy.full_attention_only``)."""
    own = sorted({r for r, _, _ in tails})
    tries = {r: _trie([y for q, _, y in tails if q == r]) for r in own}
    groups = [[own[i] for i in g] for g in _within_logits_budget([len(tries[r][0]) for r in own], position_bytes)]
    rest = torch.empty(len(tails))
    for rows, group_cache in zip(groups, _caches_for(cache, groups, mask.shape[0], model.device)):
        order = [i for r in rows for i, t in enumerate(tails) if t[0] == r]  # row by row, as the tries list them
        rest[order] = _tails_as_trees(model, group_cache, mask[rows], [tries[r] for r in rows], pad)
    return rest


def _trie(conts: list[list[int]]) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """The token trie of ``conts`` without their first tokens' root: per node its token, parent node (-1: a first
    token) and depth; per continuation the node of each of its tokens."""
    tokens: list[int] = []
    parent: list[int] = []
    depth: list[int] = []
    index: dict[tuple[int, int], int] = {}
    paths = []
    for y in conts:
        node, path = -1, []
        for d, t in enumerate(y):
            key = (node, t)
            if key not in index:
                index[key] = len(tokens)
                tokens.append(t)
                parent.append(node)
                depth.append(d)
            node = index[key]
            path.append(node)
        paths.append(path)
    return tokens, parent, depth, paths


def _tails_as_trees(model: Any, cache: Any, mask: torch.Tensor,
                    tries: list[tuple[list[int], list[int], list[int], list[list[int]]]], pad: int) -> torch.Tensor:
    """Sum of log P(tokens 2.. | context row) for every continuation of every row's trie (:func:`_trie`), row by
    row, in one forward: each trie after its row's cached context, every node attending to the context and to its
    own ancestors (a tree attention mask, position = context length + depth), the same sums as one forward per
    continuation."""
    rows, n, width = len(tries), max(len(t[0]) for t in tries), mask.shape[1]
    dev, dtype = model.device, model.get_output_embeddings().weight.dtype
    ids = torch.full((rows, n), pad, dtype=torch.long)
    allow = torch.zeros((rows, n, width + n), dtype=torch.bool)
    allow[:, :, :width] = mask.bool()[:, None, :]
    pos = torch.zeros((rows, n), dtype=torch.long)
    for r, (tokens, parent, depth, _) in enumerate(tries):
        ids[r, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        pos[r, :len(tokens)] = int(mask[r].sum()) + torch.tensor(depth, dtype=torch.long)
        for k in range(n):
            a = k
            while a >= 0:  # a node sees itself and its ancestors; a padding node only itself
                allow[r, k, width + a] = True
                a = parent[a] if a < len(tokens) else -1
    bias = torch.zeros(allow.shape, dtype=dtype).masked_fill(~allow, torch.finfo(dtype).min)[:, None]
    logits = model(input_ids=ids.to(dev), attention_mask=bias.to(dev), position_ids=pos.to(dev), cache=cache).logits
    rest = []
    for r, (tokens, _, _, paths) in enumerate(tries):
        for path in paths:
            lg = logits[r, path[:-1]].float()  # node of token k predicts token k + 1
            tgt = torch.tensor([tokens[k] for k in path[1:]], device=lg.device)
            rest.append((lg.gather(-1, tgt[:, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)).sum().cpu())
    return torch.stack(rest)


def _tails_given_cache(model: Any, cache: Any, mask: torch.Tensor, conts: list[list[int]], pad: int) -> torch.Tensor:
    """Sum of log P(tokens 2.. of continuation i | row i of ``cache``), shape ``(len(conts),)``; ``mask`` holds the
    cached rows' attention masks."""
    dev = model.device
    cont_ids, cont_mask = _right_padded(conts, pad)
    mask2 = torch.cat([mask, cont_mask], 1)
    pos2 = mask.sum(1)[:, None] + torch.arange(cont_ids.shape[1])[None]
    logits = model(input_ids=cont_ids.to(dev), attention_mask=mask2.to(dev), position_ids=pos2.to(dev),
                   cache=cache).logits[:, :-1]
    rest = torch.empty(len(conts))
    tgt, keep = cont_ids[:, 1:].to(dev), cont_mask[:, 1:]
    for r in range(0, len(conts), 32):  # fp32 log-softmax of 32 rows at a time
        lg = logits[r:r + 32].float()
        lp = lg.gather(-1, tgt[r:r + 32, :, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)
        rest[r:r + 32] = (lp.cpu() * keep[r:r + 32]).sum(1)
    return rest
