"""Greedy decoding for evaluation on a CPU: a shared prompt prefix computed once, finished rows dropped.

``transformers``' ``generate`` keeps every row of a batch until the last one ends, and computes each row's copy
of the chat template's system prompt. On 2 CPU cores at 1.5B, prefill runs at about 400 tokens/s and a decode
step costs about the same for 16 rows as for 64 (weights are read once per step), so both matter. This loop:

1. computes the KV cache of the prefix every prompt shares (Qwen's template: 24 tokens) once, at batch 1, and
   repeats it over the batch (``Cache.batch_repeat_interleave``);
2. lays each row out as ``[prefix][padding][rest of the prompt]``: the padding is masked and the position ids
   skip it, so each row sees the same positions and tokens as with left padding;
3. decodes greedily and removes a row from the batch (``Cache.batch_select_indices``) as soon as it emits a stop
   id or ``done(i, text)`` says the reader of input row ``i`` has seen all it reads (the keyword judge's window, see
   :func:`dcr.judges.keyword.window_closed`).

In exact arithmetic the tokens are those of ``generate(do_sample=False)``; in bf16 a row's numbers depend a
little on its batch (as they do in ``generate``), so a few completions differ (BENCHMARKS.md measures how many).
Models whose generation config changes logits (repetition penalty, ...) use ``generate`` instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# generation-config fields that make greedy decoding differ from a plain argmax of the logits
LOGIT_CHANGING = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                  "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                  "forced_bos_token_id": None, "forced_eos_token_id": None, "sequence_bias": None,
                  "min_new_tokens": None, "min_length": 0, "exponential_decay_length_penalty": None}


@dataclass(frozen=True)
class Decoded:
    """One row's greedy continuation and why it ended: ``stop`` (a stop id), ``length`` (``max_new_tokens``)
    or ``done`` (the ``done`` callback: the row was cut once its reader had read all it reads)."""

    text: str
    ended: str


def full_attention_only(model: Any) -> bool:
    """True when every layer of the model's cache is a plain full-attention ``DynamicLayer`` (no sliding window or
    other bookkeeping), so caches can be widened and one custom 4D attention mask is exact for every layer."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def plain_argmax(model: Any) -> bool:
    """True when the model's generation config leaves greedy decoding a plain argmax of the logits."""
    gen = getattr(model, "generation_config", None)
    return gen is None or all(getattr(gen, k, v) in (v, None) for k, v in LOGIT_CHANGING.items())


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all rows share, leaving every row at least one token of its own (0 for
    one row: sharing with itself saves nothing and costs a forward)."""
    if len(rows) < 2:
        return 0
    n, first = min(len(r) for r in rows) - 1, rows[0]
    for i in range(max(n, 0)):
        if any(r[i] != first[i] for r in rows):
            return i
    return max(n, 0)


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """The first index of each row's maximum (as ``argmax``); ``max`` is 4x faster on bf16 CPU logits."""
    return torch.max(logits, dim=-1).indices


def _widen(cache: Any, p: int, extra: int) -> None:
    """Insert ``extra`` empty (masked) slots after the first ``p`` of every layer's keys and values."""
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            gap = t.new_zeros((*t.shape[:2], extra, t.shape[3]))
            setattr(layer, name, torch.cat([t[:, :, :p], gap, t[:, :, p:]], dim=2))


def _stack(caches: list[Any]) -> Any:
    """One cache holding the rows of ``caches`` (equal widths) in order."""
    first = caches[0]
    for i, layer in enumerate(first.layers):
        layer.keys = torch.cat([c.layers[i].keys for c in caches])
        layer.values = torch.cat([c.layers[i].values for c in caches])
    return first


def _prefill(model: Any, rows: list[list[int]], pad_id: int,
             chunk: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cache, attention mask, last position per row, first new token per row) after reading every prompt.

    The rows after the shared prefix are read ``chunk`` at a time, each chunk padded only to its own longest row
    (rows should come sorted by length), then the chunks' caches are widened to the longest with masked slots.
    """
    dev = model.device
    if not full_attention_only(model):
        chunk = len(rows)  # sliding or other layers keep their own bookkeeping: one chunk, no widening
    p = common_prefix(rows)
    prefix = None
    if p:
        prefix = model(input_ids=torch.tensor([rows[0][:p]], device=dev), use_cache=True, logits_to_keep=1).cache
    width = max(len(r) - p for r in rows)
    caches, owns, firsts = [], [], []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        w = max(len(r) - p for r in part)
        ids = torch.full((len(part), w), pad_id, dtype=torch.long, device=dev)
        own = torch.zeros((len(part), w), dtype=torch.long, device=dev)
        for i, r in enumerate(part):
            ids[i, w - len(r) + p:] = torch.tensor(r[p:], device=dev)
            own[i, w - len(r) + p:] = 1
        cache = None
        if prefix is not None:
            cache = copy.deepcopy(prefix)
            cache.batch_repeat_interleave(len(part))
        pos = (p + own.cumsum(-1) - 1).masked_fill(own == 0, 1)
        mask = torch.cat([torch.ones((len(part), p), dtype=torch.long, device=dev), own], dim=1)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                    logits_to_keep=1)
        if w < width:
            _widen(out.cache, p, width - w)
        caches.append(out.cache)
        owns.append(torch.cat([own.new_zeros((len(part), width - w)), own], dim=1))
        firsts.append(_argmax(out.logits[:, -1]))
    own = torch.cat(owns)
    mask = torch.cat([torch.ones((len(rows), p), dtype=torch.long, device=dev), own], dim=1)
    last = p + own.sum(-1) - 1
    return (_stack(caches) if len(caches) > 1 else caches[0]), mask, last, torch.cat(firsts)


@torch.no_grad()
def greedy_decode(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int,
                  add_special_tokens: bool = False, eos_ids: Sequence[int] | None = None,
                  done: Callable[[int, str], bool] | None = None, check_every: int = 4,
                  prefill_chunk: int = 25) -> list[Decoded]:
    """Greedy continuations of full model inputs (template applied), in input order. ``done(i, text)`` (``i``:
    the row's index in ``texts``), asked every ``check_every`` tokens of a row, ends the row early (``ended ==
    "done"``). Prompts are read ``prefill_chunk`` rows at a time, in length order."""
    rows = [tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"] for t in texts]
    return decode_rows(model, tokenizer, rows, max_new_tokens, eos_ids, done, check_every, prefill_chunk)


def decode_rows(model: Any, tokenizer: Any, rows: list[list[int]], max_new_tokens: int,
                eos_ids: Sequence[int] | None = None, done: Callable[[int, str], bool] | None = None,
                check_every: int = 4, prefill_chunk: int = 25) -> list[Decoded]:
    """:func:`greedy_decode` of already tokenised inputs."""
    if eos_ids is None:
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (list(eos_ids) or [0])[0]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # batch row j holds input row order[j]
    cache, mask, last, nxt = _prefill(model, [rows[i] for i in order], pad_id, prefill_chunk)
    stops = torch.tensor(sorted(set(eos_ids)) or [-1], device=nxt.device)
    tokens: list[list[int]] = [[] for _ in rows]
    ended = ["length"] * len(rows)
    live = order
    for step in range(1, max_new_tokens + 1):
        hit = torch.isin(nxt, stops).tolist()
        for i, t, h in zip(live, nxt.tolist(), hit):
            tokens[i].append(t)
            ended[i] = "stop" if h else ended[i]
        if step == max_new_tokens:
            break
        if done is not None and step % check_every == 0:
            for i, text in zip(live, tokenizer.batch_decode([tokens[i] for i in live], skip_special_tokens=True)):
                ended[i] = "done" if ended[i] == "length" and done(i, text.strip()) else ended[i]
        keep = [j for j, i in enumerate(live) if ended[i] == "length"]
        if not keep:
            break
        if len(keep) < len(live):
            idx = torch.tensor(keep, device=nxt.device)
            cache.batch_select_indices(idx)
            mask, last, nxt, live = mask[idx], last[idx], nxt[idx], [live[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        last = last + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], cache=cache,
                    use_cache=True)
        nxt = _argmax(out.logits[:, -1])
    texts_out = tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return [Decoded(t, e) for t, e in zip(texts_out, ended)]
