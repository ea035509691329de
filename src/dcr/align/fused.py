"""A cheaper forward for peft's LoRA linears: the same function, fewer passes over full-width tensors.

peft computes ``result = base(x) + lora_B(lora_A(dropout(x))) * scaling``: the adapter's product is a new
tensor as wide as the layer's output, scaled in a second pass and added in a third (and the backward pass scales
the full-width gradient once more). On CPU these passes are memory-bound and allocate a fresh output each (on
Qwen2.5-Coder-0.5B, micro-batch 8 x 192 tokens, the scaling of the MLP's 4864-wide outputs alone took 13 % of an
align step; BENCHMARKS.md). :func:`fuse_lora` gives every vanilla LoRA linear a forward that scales the rank-r
activations instead and accumulates their product with ``lora_B`` into the base output in place
(``addmm_``): one pass, no extra full-width tensor, forward or backward. The function is the same up to float
rounding (the scale is applied before the rank-r product instead of after it), so results are not bit-identical
to peft's forward: ``AlignConfig.fused_lora`` keys it.

Anything but a single active vanilla adapter without bias (merged or disabled adapters, DoRA and other
variants, ``lora_bias``, per-row ``adapter_names``) goes to peft's own forward.
"""

from __future__ import annotations

import types
from typing import Any

import torch


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    names = [n for n in self.active_adapters if n in self.lora_A]
    if (self.disable_adapters or self.merged or len(names) != 1 or names[0] in self.lora_variant
            or kwargs.get("adapter_names") is not None or self.lora_B[names[0]].bias is not None):
        return type(self).forward(self, x, *args, **kwargs)
    self._check_forward_args(x, *args, **kwargs)
    name = names[0]
    result = self.base_layer(x, *args, **kwargs)
    lora_a, lora_b = self.lora_A[name], self.lora_B[name]
    h = lora_a(self.lora_dropout[name](self._cast_input_dtype(x, lora_a.weight.dtype))) * self.scaling[name]
    if not result.is_contiguous():
        return result + lora_b(h)
    # in place: linear's backward never reads its output
    result.view(-1, result.shape[-1]).addmm_(h.reshape(-1, h.shape[-1]).to(result.dtype),
                                             lora_b.weight.t().to(result.dtype))
    return result


def fuse_lora(model: Any) -> int:
    """Give every peft ``lora.Linear`` of ``model`` the fused forward; returns how many were changed."""
    from peft.tuners.lora.layer import Linear

    changed = 0
    for module in model.modules():
        if type(module) is Linear:  # subclasses (quantised layers) keep their own forward
            module.forward = types.MethodType(_fused_forward, module)
            changed += 1
    return changed
