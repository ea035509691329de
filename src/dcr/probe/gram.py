"""eNTK blocks as a Gram matrix of stored per-prompt gradients: ``K = J J^T`` without any JVP.

``K[a, b][r, c] = g(a, r) . g(b, c)`` with ``g(a, r) = d z_{S(a)[r]}(x_a) / d theta_sub``, the same gradients
:func:`dcr.probe.ntk.vjp_directions` computes. :func:`dcr.probe.ntk.kernel_blocks` spends a forward pass over
every prompt per gradient (``N k`` JVPs, ``2 N k`` forwards with finite differences); here each gradient is
computed once (``N k`` backward passes of one prompt) and every pair is a dot product. The result equals the
exact-JVP blocks up to float rounding.

Memory: vocabulary-sized matrices (the LM head, tied to the input embeddings in SmolLM2 and Gemma) get a
gradient only on the rows of the top-k token and of the prompt's own input tokens, so they are stored as
those rows; every other parameter's gradient is stored densely, in fp32 when the whole store fits
``budget_gb``, else in bf16 (products accumulate in fp32). ``storage`` says which was used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dcr.probe.ntk import Batch, Params, last_logits, row, top_k_sets, vjp_directions

VOCAB_ROWS = 4096  # a 2-D parameter with at least this many rows is stored sparsely by rows


def _sparse_names(params: Params, min_rows: int) -> list[str]:
    return [n for n, p in params.items() if p.dim() == 2 and p.shape[0] >= min_rows]


def _add_sparse(gram: torch.Tensor, rows: dict[tuple[str, int], list[tuple[int, torch.Tensor]]]) -> None:
    """``gram[u, v] += sum over shared rows of rows_u . rows_v`` (vectors that touch the same vocabulary row)."""
    for entries in rows.values():
        idx = torch.tensor([u for u, _ in entries])
        mat = torch.stack([r for _, r in entries]).double()
        gram[idx[:, None], idx[None, :]] += mat @ mat.T


def gram_blocks(model: Any, batch: Batch, params: Params, top_k: int, batch_size: int = 32,
                budget_gb: float = 6.0, progress: Callable[[int, int], None] | None = None,
                sparse_min_rows: int = VOCAB_ROWS) -> tuple[torch.Tensor, str]:
    """All blocks ``K[a, b]`` for the N prompts of ``batch``: ``([N, N, k, k] float64, storage dtype name)``."""
    with torch.no_grad():
        n_all = batch["input_ids"].shape[0]
        sets = torch.cat([top_k_sets(last_logits(model, {k: v[i:i + batch_size] for k, v in batch.items()}),
                                     top_k) for i in range(0, n_all, batch_size)])
    n, k = sets.shape
    names = list(params)
    sparse = set(_sparse_names(params, sparse_min_rows))
    dense_size = sum(p.numel() for name, p in params.items() if name not in sparse)
    fits = n * k * dense_size * 4 <= budget_gb * 2**30
    storage = torch.float32 if fits else torch.bfloat16
    dense = torch.empty(n * k, dense_size, dtype=storage)
    rows: dict[tuple[str, int], list[tuple[int, torch.Tensor]]] = {}
    for b in range(n):
        for c, w in enumerate(vjp_directions(model, params, row(batch, b), sets[b])):
            u = b * k + c
            dense[u] = torch.cat([g.reshape(-1) for name, g in zip(names, w) if name not in sparse]).to(storage)
            for name, g in zip(names, w):
                if name in sparse:
                    for r in (g != 0).any(dim=1).nonzero().squeeze(1).tolist():
                        rows.setdefault((name, r), []).append((u, g[r].float().clone()))  # not a view
        if progress is not None:
            progress(b + 1, n)
    gram = torch.zeros(n * k, n * k, dtype=torch.float64)
    step = max(1, int(2**28 // max(1, dense_size)))  # row blocks of about 1 GB in fp32
    for i in range(0, n * k, step):
        block = dense[i:i + step].float()
        for j in range(0, n * k, step):
            gram[i:i + step, j:j + step] = (block @ dense[j:j + step].float().T).double()
    _add_sparse(gram, rows)
    blocks = gram.view(n, k, n, k).permute(0, 2, 1, 3).contiguous()
    return blocks, str(storage).removeprefix("torch.")
