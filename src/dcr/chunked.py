"""Cross-entropy through the LM head a chunk of tokens at a time: the full-vocabulary logits of at most
``chunk`` tokens exist at once, forward and backward. Used by refine's NLL term and align's SFT loss.

Two ways to keep the logits of one chunk only:

- ``frozen=True`` (the head has no trainable parameter, as in refine and in LoRA align): each chunk's gradient
  with respect to its hidden states is taken right after its loss, in the forward, and kept (``[chunk, d]``, a
  few MB); the backward pass only scales it. The head runs once per chunk forward and once backward.
- otherwise each chunk runs under activation checkpointing, so its logits are recomputed in the backward pass:
  the head runs twice forward and once backward.

Both give the same loss (bit for bit) and the same gradient up to float rounding of where the upstream gradient
is applied (``tests/test_chunked.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class _KeptGradient(torch.autograd.Function):
    """``total`` (a loss already computed from ``hidden``) as a function of ``hidden`` whose gradient is ``grad``
    (d total / d hidden, computed in the forward), scaled by the upstream gradient."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, total: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grad)
        return total.detach().clone()

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad * upstream.to(grad.dtype), None, None


def head_frozen(model: Any) -> bool:
    """Whether no parameter of ``model``'s LM head is trained (refine: the head stays as loaded; LoRA align: the
    adapters sit on the blocks), so :func:`chunked_cross_entropy` may take ``frozen=True``."""
    return not any(p.requires_grad for p in model.get_output_embeddings().parameters())


def chunked_cross_entropy(logits_of: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor,
                          targets: torch.Tensor, chunk: int, frozen: bool = False) -> torch.Tensor:
    """Sum over rows of ``cross_entropy(logits_of(hidden[rows]).float(), targets[rows])``; ``hidden [N, d]`` are
    the LM head's inputs at the scored positions, ``targets [N]`` the next tokens. Equal to one call on all rows.
    ``frozen``: ``logits_of`` has no parameter that requires a gradient (module docstring)."""
    def part(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_of(h).float(), y, reduction="sum")

    if frozen and hidden.requires_grad and torch.is_grad_enabled():
        return _frozen_head(part, hidden, targets, chunk)
    total = hidden.sum() * 0.0  # keeps the graph (and the dtype of a sum) when there are no rows
    for start in range(0, len(targets), chunk):
        total = total + checkpoint(part, hidden[start:start + chunk], targets[start:start + chunk],
                                   use_reentrant=False)
    return total.float()


def _frozen_head(part: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], hidden: torch.Tensor,
                 targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """The loss of every chunk and its gradient with respect to the chunk's hidden states, taken in the forward."""
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grads = []
    for start in range(0, len(targets), chunk):
        h = hidden[start:start + chunk].detach().requires_grad_(True)
        loss = part(h, targets[start:start + chunk])
        grads.append(torch.autograd.grad(loss, h)[0])
        total = total + loss.detach().float()
    grad = torch.cat(grads) if grads else torch.zeros_like(hidden)
    return _KeptGradient.apply(hidden, total, grad)
