"""LoRA dropout drawn from gaps: the same distribution as ``torch.nn.Dropout``, about 3.6x cheaper on CPU.

``torch.nn.Dropout`` draws one Bernoulli variate per element; on CPU that draw is single-threaded and took
21 % of an align step on SmolLM2 (the paper's LoRA dropout 0.05 on 210 adapted linears). The gaps between
successive dropped positions of an i.i.d. Bernoulli(p) sequence are i.i.d. Geometric(p), so drawing about
``n * p`` geometric gaps and zeroing their cumulative positions gives exactly the same mask distribution with
20x fewer random draws at p = 0.05. Kept elements are scaled by ``1 / (1 - p)`` as in ``torch.nn.Dropout``.
Draws come from torch's default generator, so a seeded run repeats itself.
"""

from __future__ import annotations

from typing import Any

import torch


def drop_positions(n: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sorted flat indices of the dropped elements of an ``n``-element Bernoulli(``p``) dropout mask."""
    if n == 0 or p <= 0.0:
        return torch.empty(0, dtype=torch.long, device=device)
    chunk = int(n * p + 6 * (n * p) ** 0.5 + 16)  # almost always enough gaps in one draw
    ends = torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0)
    parts = [ends]
    while parts[-1][-1] < n:  # float64 holds these integer sums exactly
        parts.append(torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0).add_(parts[-1][-1]))
    pos = torch.cat(parts).sub_(1).long()
    return pos[pos < n].to(device)


class GapDropout(torch.nn.Module):
    """Inverted dropout with :func:`drop_positions` masks; the identity in eval mode or at ``p = 0``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        dropped = drop_positions(x.numel(), self.p, x.device)
        y = x * (1.0 / (1.0 - self.p))
        if not y.is_contiguous():
            return y.flatten().index_fill(0, dropped, 0).view_as(x)
        y.view(-1).index_fill_(0, dropped, 0)  # in place: a fresh tensor, and mul's backward does not read it
        return y

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_gap_dropout(model: Any) -> int:
    """Replace every ``torch.nn.Dropout`` among peft's ``lora_dropout`` modules with :class:`GapDropout` of the
    same ``p``; returns how many were replaced."""
    replaced = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, torch.nn.Dropout):
                drops[name] = GapDropout(drop.p)
                replaced += 1
    return replaced
