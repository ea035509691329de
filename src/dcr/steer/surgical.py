"""Surgical (Wang et al. 2024): ablate the false-refusal direction everywhere, add the harmful-refusal direction.

Directions, from last-prompt-token activations at block ``layer``:

- ``r_h = mean(harmful) - mean(harmless)`` (harmful-refusal direction, kept unnormalised for the addition),
- ``r_f = mean(seemingly toxic) - mean(harmless)``, orthogonalised: ``r_f' = r_f - (r_f . r_h_hat) r_h_hat``.

Inference hooks (``SurgicalSteerer.apply``):

- ablation with weight ``w_f`` of ``r_hat = r_f' / |r_f'|`` from every *write* into the residual stream (the
  embedding output and each block's writers, found by ``dcr.steer.writers``): ``y <- y - w_f (y . r_hat) r_hat``.
  Since the stream is the sum of its writes, its component along ``r_hat`` is scaled by ``1 - w_f`` at every
  layer and position, exactly as orthogonalising the writing weights would do (so hooks == baked export);
- addition of ``w_h * r_h`` to the output of block ``layer`` at every position.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from dcr.errors import ModelError
from dcr.hooks import hidden_of, hooks, replace_hidden
from dcr.models import get_layers
from dcr.steer.writers import find_writers


def ablate(h: torch.Tensor, r_hat: torch.Tensor, w: float) -> torch.Tensor:
    """``h - w (h . r_hat) r_hat`` along the last axis (``r_hat`` unit norm)."""
    r = r_hat.to(device=h.device, dtype=h.dtype)
    return h - w * (h @ r).unsqueeze(-1) * r


@dataclass
class SurgicalSteerer:
    """Hooks for Surgical steering; ``apply(model)`` installs them for a ``with`` block."""

    r_f_hat: torch.Tensor
    r_h: torch.Tensor
    layer: int
    w_f: float
    w_h: float
    method: str = "surgical"

    def _ablate_fn(self) -> Any:
        def fn(_m: Any, _a: Any, out: Any) -> Any:
            return replace_hidden(out, ablate(hidden_of(out), self.r_f_hat, self.w_f))

        return fn

    def _add_fn(self) -> Any:
        def fn(_m: Any, _a: Any, out: Any) -> Any:
            h = hidden_of(out)
            return replace_hidden(out, h + self.w_h * self.r_h.to(device=h.device, dtype=h.dtype))

        return fn

    @contextmanager
    def apply(self, model: Any) -> Iterator[SurgicalSteerer]:
        """Install the ablation and addition hooks on ``model``; they are removed on exit (also on error)."""
        blocks = get_layers(model)
        if not 0 <= self.layer < len(blocks):
            raise ModelError(f"steering layer {self.layer} out of range: the model has blocks 0..{len(blocks) - 1}")
        if self.r_h.shape[-1] != model.get_input_embeddings().weight.shape[-1]:
            raise ModelError(f"steering directions have size {self.r_h.shape[-1]} but the model's hidden size is "
                             f"{model.get_input_embeddings().weight.shape[-1]}. Fix: use the model they came from")
        with ExitStack() as stack:
            if self.w_f > 0:
                mods = find_writers(model).modules()
                stack.enter_context(hooks(mods, [self._ablate_fn()] * len(mods)))
            if self.w_h > 0:
                stack.enter_context(hooks([blocks[self.layer]], [self._add_fn()]))
            yield self


def _untie(model: Any) -> None:
    """Give the LM head its own copy of tied embedding weights (baking must not change the unembedding)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is not None and head.weight is emb.weight:
        head.weight = torch.nn.Parameter(emb.weight.detach().clone(), requires_grad=emb.weight.requires_grad)
        for cfg in {id(model.config): model.config, id(model.config.get_text_config()):
                    model.config.get_text_config()}.values():
            cfg.tie_word_embeddings = False


@torch.no_grad()
def bake(model: Any, steerer: SurgicalSteerer) -> dict[str, Any]:
    """Orthogonalise the residual writers' weights in place (``W <- W - w_f r r^T W``); maybe bake ``+w_h r_h``.

    The addition is baked only when block ``layer``'s last writer is a linear layer with a bias. Returns what
    was baked: ``{"ablation": bool, "addition": bool, "writers": [...], "untied_embeddings": bool}``.
    """
    writers = find_writers(model)
    if not writers.bakeable:
        raise ModelError(f"{type(model).__name__}: some residual writers are not linear layers (e.g. norms after the "
                         "attention/MLP branch), so the ablation cannot be baked into weights. Fix: set export: false "
                         "and use the hooks (dcr evaluate --steer DIR)")
    tied = model.get_output_embeddings() is not None and \
        model.get_output_embeddings().weight is model.get_input_embeddings().weight
    _untie(model)
    r = steerer.r_f_hat.float()
    emb = model.get_input_embeddings().weight
    if steerer.w_f > 0:
        w = emb.float()
        emb.copy_((w - steerer.w_f * (w @ r).unsqueeze(-1) * r).to(emb.dtype))
        for lin in (t for per in writers.targets for t in per if t is not None):
            wt = lin.weight.float()  # [d_out = hidden, d_in]
            lin.weight.copy_((wt - steerer.w_f * torch.outer(r, r @ wt)).to(lin.weight.dtype))
            if lin.bias is not None:
                b = lin.bias.float()
                lin.bias.copy_((b - steerer.w_f * (b @ r) * r).to(lin.bias.dtype))
    last = writers.targets[steerer.layer][-1]
    added = steerer.w_h == 0 or (last is not None and last.bias is not None)
    if steerer.w_h > 0 and added and last is not None and last.bias is not None:
        last.bias.add_((steerer.w_h * steerer.r_h.float()).to(last.bias.dtype))
    names = {id(m): n for n, m in model.named_modules()}
    return {"ablation": True, "addition": bool(added), "untied_embeddings": bool(tied),
            "writers": [names.get(id(t), "?") for per in writers.targets for t in per]}
