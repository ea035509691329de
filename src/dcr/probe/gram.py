"""eNTK blocks as a Gram matrix of stored per-prompt gradients: ``K = J J^T`` without any JVP.

``K[a, b][r, c] = g(a, r) . g(b, c)`` with ``g(a, r) = d z_{S(a)[r]}(x_a) / d theta_sub``, the same gradients
:func:`dcr.probe.ntk.vjp_directions` computes. :func:`dcr.probe.ntk.kernel_blocks` spends a forward pass over
every prompt per gradient (``N k`` JVPs, ``2 N k`` forwards with finite differences); here each gradient is
computed once (``N k`` backward passes of one prompt) and every pair is a dot product. The result equals the
exact-JVP blocks up to float rounding.

Memory: vocabulary-sized matrices (the LM head, tied to the input embeddings in SmolLM2 and Gemma) get a
gradient only on the rows of the top-k token and of the prompt's own input tokens, so they are stored as
those rows; every other parameter's gradient is stored densely, in fp32 when the whole store fits
``budget_gb``, else in bf16 (products accumulate in fp32), and when even the bf16 store does not fit it is streamed:
the dense parameters are cut into ranges whose store fits, and each range is one pass that recomputes every
gradient and adds its dot products to K (:func:`plan_store`). ``storage`` says which was used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dcr.probe.ntk import Batch, Params, iter_vjp_directions, last_logits, row, top_k_sets


def vocab_rows(model: Any) -> int:
    """Rows of the input embedding (the vocabulary): a 2-D parameter with at least this many rows (the embedding,
    the LM head) is stored by rows. A fixed row count would catch MLP matrices too (Qwen2.5-0.5B's 4864-row
    projections), whose every row has a gradient: stored row by row they cost more than dense, outside the budget."""
    return int(model.get_input_embeddings().weight.shape[0])


def _sparse_names(params: Params, min_rows: int) -> list[str]:
    return [n for n, p in params.items() if p.dim() == 2 and p.shape[0] >= min_rows]


def _add_sparse(gram: torch.Tensor, rows: dict[tuple[str, int], list[tuple[int, torch.Tensor]]]) -> None:
    """``gram[u, v] += sum over shared rows of rows_u . rows_v`` (vectors that touch the same vocabulary row)."""
    for entries in rows.values():
        idx = torch.tensor([u for u, _ in entries])
        mat = torch.stack([r for _, r in entries]).double()
        gram[idx[:, None], idx[None, :]] += mat @ mat.T


Chunk = list[tuple[str, int, int]]  # (parameter name, flat start, flat end)


def plan_store(vectors: int, sizes: dict[str, int], budget_gb: float) -> tuple[torch.dtype, list[Chunk]]:
    """Storage dtype and parameter chunks so that ``vectors`` stored gradients of one chunk fit ``budget_gb``.

    fp32 in one pass when the whole dense store fits; else bf16, in one pass when that fits (as before streaming
    existed) and otherwise in as many passes as needed, each over a contiguous range of the flattened dense
    parameters (a parameter may be split between passes). Each pass recomputes every gradient, but only for the
    parameters it stores.
    """
    total, budget = sum(sizes.values()), budget_gb * 2**30
    if vectors * total * 4 <= budget:
        dtype, per = torch.float32, max(1, total)
    else:
        dtype, per = torch.bfloat16, max(1, int(budget // (vectors * 2)))
    chunks: list[Chunk] = [[]]
    room = per
    for name, size in sizes.items():
        lo = 0
        while lo < size:
            if room == 0:
                chunks.append([])
                room = per
            hi = min(size, lo + room)
            chunks[-1].append((name, lo, hi))
            room -= hi - lo
            lo = hi
    return dtype, chunks


def _keep_rows(rows: dict[tuple[str, int], list[tuple[int, torch.Tensor]]], name: str, u: int,
               g: torch.Tensor) -> None:
    for r in (g != 0).any(dim=1).nonzero().squeeze(1).tolist():
        rows.setdefault((name, r), []).append((u, g[r].float().clone()))  # not a view


def _add_dense(gram: torch.Tensor, store: torch.Tensor) -> None:
    """``gram += store store^T`` over column ranges of about 1 GB in fp32: each stored value is cast once."""
    step = max(1, int(2**28 // max(1, store.shape[0])))
    for lo in range(0, store.shape[1], step):
        cols = store[:, lo:lo + step].float()
        gram += (cols @ cols.T).double()


def gram_blocks(model: Any, batch: Batch, params: Params, top_k: int, batch_size: int = 32,
                budget_gb: float = 6.0, progress: Callable[[int, int], None] | None = None,
                sparse_min_rows: int | None = None) -> tuple[torch.Tensor, str]:
    """All blocks ``K[a, b]`` for the N prompts of ``batch``: ``([N, N, k, k] float64, storage)``.

    ``sparse_min_rows``: 2-D parameters with at least this many rows are stored by rows (default: the vocabulary
    size, see :func:`vocab_rows`). ``storage``: the dtype of the stored dense gradients, and the number of passes
    when the store was streamed (``"bfloat16, 3 passes"``; see :func:`plan_store`).
    """
    with torch.no_grad():
        n_all = batch["input_ids"].shape[0]
        sets = torch.cat([top_k_sets(last_logits(model, {k: v[i:i + batch_size] for k, v in batch.items()}),
                                     top_k) for i in range(0, n_all, batch_size)])
    n, k = sets.shape
    sparse = set(_sparse_names(params, vocab_rows(model) if sparse_min_rows is None else sparse_min_rows))
    sizes = {name: p.numel() for name, p in params.items() if name not in sparse}
    storage, chunks = plan_store(n * k, sizes, budget_gb)
    gram = torch.zeros(n * k, n * k, dtype=torch.float64)
    rows: dict[tuple[str, int], list[tuple[int, torch.Tensor]]] = {}
    for c, chunk in enumerate(chunks):
        wanted = {name for name, _, _ in chunk} | (sparse if c == 0 else set())
        subset = {name: p for name, p in params.items() if name in wanted}
        store = torch.empty(n * k, sum(hi - lo for _, lo, hi in chunk), dtype=storage)
        for b in range(n):
            for j, w in enumerate(iter_vjp_directions(model, subset, row(batch, b), sets[b])):
                grads = dict(zip(subset, w))
                if chunk:
                    store[b * k + j] = torch.cat([grads[name].reshape(-1)[lo:hi] for name, lo, hi in chunk])
                for name in sparse & set(grads):
                    _keep_rows(rows, name, b * k + j, grads[name])
            if progress is not None:
                progress(c * n + b + 1, n * len(chunks))
        _add_dense(gram, store)
        del store
    _add_sparse(gram, rows)
    blocks = gram.view(n, k, n, k).permute(0, 2, 1, 3).contiguous()
    name = str(storage).removeprefix("torch.")
    return blocks, name if len(chunks) == 1 else f"{name}, {len(chunks)} passes"
