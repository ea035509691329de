"""Circle Loss (Sun et al. 2020) as written in the DCR paper, eq. (5) of appendix A.8, and the original form.

For an anchor ``i`` with positives ``P(i)`` (same class, ``p != i``) and negatives ``N(i)`` (other class)::

    L_i = log(1 + sum_p exp(-gamma * a_p * (s_ip - D_p)) * sum_n exp(gamma * a_n * (s_in - D_n)))
        = softplus(logsumexp_p(-gamma a_p (s_ip - D_p)) + logsumexp_n(gamma a_n (s_in - D_n)))

with cosine similarities ``s``, centres ``D_p = 1 - m`` and ``D_n = m``, and detached adaptive weights

- ``paper``:    ``a_p = [D_p - s_ip]+``,  ``a_n = [s_in - D_n]+``   (eq. 5: only violating pairs get weight)
- ``original``: ``a_p = [1 + m - s_ip]+``, ``a_n = [s_in + m]+``    (Sun et al.; pytorch-metric-learning)

Reduction: the mean of ``L_i`` over the anchors that have at least one positive and one negative. An anchor
with no positive or no negative is left out of the mean (eq. 5 would give it ``log(1 + 0) = 0`` and divide by
the full batch size ``B``); this matches pytorch-metric-learning's ``CircleLoss`` with its default
``AvgNonZeroReducer``. A batch without any such anchor gives a zero loss that is still attached to the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VARIANTS = ("paper", "original")


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative pair masks for labels ``[B]``: both ``[B, B]`` bool, the diagonal excluded."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def circle_weights(sim: torch.Tensor, m: float, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached adaptive weights ``(alpha_p, alpha_n)``, each ``[B, B]``, for similarities ``sim [B, B]``."""
    s = sim.detach()
    if variant == "paper":
        return torch.relu((1 - m) - s), torch.relu(s - m)
    if variant == "original":
        return torch.relu((1 + m) - s), torch.relu(s + m)
    raise ValueError(f"circle variant {variant!r} unknown; use one of {', '.join(VARIANTS)}")


def _masked_logsumexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise logsumexp of ``x [B, B]`` over ``mask [B, B]`` (every row must keep an entry). Returns ``[B]``."""
    return torch.logsumexp(x.masked_fill(~mask, float("-inf")), dim=1)


def circle_loss_per_anchor(
    features: torch.Tensor, labels: torch.Tensor, m: float = 0.25, gamma: float = 16.0, variant: str = "paper"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor circle loss ``[B]`` and the mask ``[B]`` of anchors with a positive and a negative.

    ``features`` is ``[B, d]`` (normalised here; already-normalised input is unchanged), ``labels`` is ``[B]``.
    Invalid anchors hold 0 in the returned loss vector.
    """
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"features must be [B, d] and labels [B]; got {tuple(features.shape)}, {tuple(labels.shape)}")
    feats = F.normalize(features.float(), dim=-1)
    return circle_loss_from_sim(feats @ feats.T, labels, m, gamma, variant)


def circle_loss_from_sim(
    sim: torch.Tensor, labels: torch.Tensor, m: float = 0.25, gamma: float = 16.0, variant: str = "paper"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor circle loss ``[B]`` and valid-anchor mask ``[B]`` from a similarity matrix ``sim [B, B]``."""
    pos, neg = pair_masks(labels)
    alpha_p, alpha_n = circle_weights(sim, m, variant)
    logit_p = -gamma * alpha_p * (sim - (1 - m))
    logit_n = gamma * alpha_n * (sim - m)
    valid = pos.any(dim=1) & neg.any(dim=1)
    # Invalid rows get a dummy all-True mask so no -inf (and no NaN gradient) enters the graph; zeroed below.
    pad = ~valid[:, None]
    losses = F.softplus(_masked_logsumexp(logit_p, pos | pad) + _masked_logsumexp(logit_n, neg | pad))
    return torch.where(valid, losses, torch.zeros_like(losses)), valid


def circle_loss(
    features: torch.Tensor, labels: torch.Tensor, m: float = 0.25, gamma: float = 16.0, variant: str = "paper"
) -> torch.Tensor:
    """Scalar circle loss: the mean per-anchor loss over valid anchors (see the module docstring)."""
    losses, valid = circle_loss_per_anchor(features, labels, m, gamma, variant)
    if not bool(valid.any()):
        return losses.sum() * 0.0
    return losses[valid].mean()
