"""Cross-entropy through the LM head a chunk of tokens at a time: the full-vocabulary logits of at most
``chunk`` tokens exist at once, forward and backward (each chunk runs under activation checkpointing, so its
logits are recomputed in the backward pass instead of kept). Used by refine's NLL term and align's SFT loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def chunked_cross_entropy(logits_of: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor,
                          targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Sum over rows of ``cross_entropy(logits_of(hidden[rows]).float(), targets[rows])``; ``hidden [N, d]`` are
    the LM head's inputs at the scored positions, ``targets [N]`` the next tokens. Equal to one call on all rows."""
    def part(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_of(h).float(), y, reduction="sum")

    total = hidden.sum() * 0.0  # keeps the graph (and the dtype of a sum) when there are no rows
    for start in range(0, len(targets), chunk):
        total = total + checkpoint(part, hidden[start:start + chunk], targets[start:start + chunk],
                                   use_reentrant=False)
    return total.float()
