"""Prompt features at layer l: a forward that can stop after decoder block l, pooling, and the prompt NLL.

Layer indexing: "layer l" is the output of decoder block ``l`` (0-based), i.e. ``hidden_states[l + 1]`` of an
HF forward with ``output_hidden_states=True`` (``hidden_states[0]`` is the embedding output). The paper's
"layer 13" of Qwen2.5 is decoder block index 13 under this convention.

The forward stops after block ``l`` by raising :class:`StopForward` from a forward hook on that block: the
model's own code builds position ids, rotary embeddings and (sliding-window) attention masks, so the same code
serves llama, qwen2 and gemma3 without per-family internals. The captured hidden state keeps its autograd
graph, so the loss backpropagates through blocks ``0..l`` and the embeddings only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from dcr.errors import ConfigError
from dcr.hooks import hidden_of, hooks
from dcr.models import get_layers, num_layers
from dcr.prompts import adds_special_tokens, format_prompt


class StopForward(Exception):
    """Raised by the hook on block l to end the forward early; carries nothing (the hook stores the state)."""


def check_layer(model: Any, layer: int) -> int:
    """``layer`` if it is a valid 0-based block index of ``model``, else ConfigError naming the range."""
    n = num_layers(model)
    if not 0 <= layer < n:
        raise ConfigError(f"layer {layer} out of range: {type(model).__name__} has blocks 0..{n - 1}. "
                          f"Fix: pass --layer between 0 and {n - 1}")
    return layer


def default_layer(model: Any) -> int:
    """The default target layer: the middle block, ``num_layers // 2``."""
    return num_layers(model) // 2


def encode_prompts(
    tok: Any, prompts: Sequence[str], template: str = "auto", max_length: int = 256
) -> dict[str, torch.Tensor]:
    """Format prompts with the chat template and tokenise them, left-padded and left-truncated.

    Returns ``input_ids`` and ``attention_mask``, both ``[N, T]``.
    """
    texts = [format_prompt(tok, p, template) for p in prompts]
    tok.padding_side = "left"
    tok.truncation_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
              add_special_tokens=adds_special_tokens(tok, template))
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def layer_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int, run_tail: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden state after block ``layer`` ``[B, T, d]``, and the logits ``[B, T, V]`` when ``run_tail``.

    Without ``run_tail`` the blocks after ``layer``, the final norm and the LM head are never run.
    """
    block = get_layers(model)[check_layer(model, layer)]
    captured: list[torch.Tensor] = []

    def grab(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(hidden_of(output))
        if not run_tail:
            raise StopForward

    logits = None
    with hooks([block], [grab]):
        try:
            out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            logits = out.logits
        except StopForward:
            pass
    if len(captured) != 1:
        raise RuntimeError(f"expected one output from block {layer}, captured {len(captured)}")
    return captured[0], logits


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str = "last") -> torch.Tensor:
    """Pool ``hidden [B, T, d]`` over the prompt tokens of ``attention_mask [B, T]`` to ``[B, d]``.

    ``last``: the last non-pad token (position T-1 under left padding, found from the mask so right padding
    works too); ``mean``: the mean over non-pad tokens.
    """
    mask = attention_mask.to(hidden.device)
    if how == "last":
        pos = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * (pos + 1)).argmax(dim=1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    if how == "mean":
        w = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"pooling {how!r} unknown; use last or mean")


def prompt_features(
    model: Any, batch: dict[str, torch.Tensor], layer: int, pooling: str = "last", run_tail: bool = False,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """L2-normalised (``normalize=False``: raw) pooled features ``[B, d]`` (fp32) at ``layer`` and the logits
    when ``run_tail``."""
    hidden, logits = layer_forward(model, batch["input_ids"], batch["attention_mask"], layer, run_tail)
    feats = pool(hidden.float(), batch["attention_mask"], pooling)
    return (F.normalize(feats, dim=-1) if normalize else feats), logits


def nll_targets(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T-1]`` bool: which next-token targets count, those where the target and the token before it are
    both real (non-pad) tokens."""
    return (attention_mask[:, 1:] * attention_mask[:, :-1]).bool()


def prompt_nll(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               reduction: str = "mean") -> Any:
    """Next-token NLL (fp32) over prompt tokens: ``logits [B, T, V]`` predicting ``input_ids [B, T]``; the mean, or
    with ``reduction="sum"`` the pair (sum, number of tokens).

    A target counts as :func:`nll_targets` says.
    """
    keep = nll_targets(attention_mask)
    n = keep.sum()
    if not bool(keep.any()):
        zero = logits.sum() * 0.0
        return (zero, n) if reduction == "sum" else zero
    # only the kept positions are upcast to fp32 (the [B, T, V] logits dominate memory)
    out = F.cross_entropy(logits[:, :-1][keep].float(), input_ids[:, 1:][keep], reduction=reduction)
    return (out, n) if reduction == "sum" else out


@torch.no_grad()
def extract_features(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    layer: int,
    pooling: str = "last",
    template: str = "auto",
    max_length: int = 256,
    batch_size: int = 32,
    autocast: torch.dtype | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Normalised (or, ``normalize=False``, raw pooled) features ``[N, d]`` (fp32, on CPU) of ``prompts`` at
    ``layer``, in input order.

    Prompts are batched by length (less padding); ``autocast`` (e.g. bf16) runs the forward under autocast.
    """
    if not prompts:
        raise ValueError("extract_features got no prompts")
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[torch.Tensor] = [torch.empty(0)] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = encode_prompts(tok, [prompts[i] for i in idx], template, max_length)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            feats, _ = prompt_features(model, batch, layer, pooling, normalize=normalize)
        for i, f in zip(idx, feats.float().cpu()):
            out[i] = f
    return torch.stack(out)


def class_mean_center(model: Any, tok: Any, prompts: Sequence[str], labels: Sequence[int], layer: int,
                      pooling: str = "last", template: str = "auto", max_length: int = 256, batch_size: int = 32,
                      autocast: torch.dtype | None = None) -> torch.Tensor:
    """The mean of the per-class means of the raw pooled layer-l features ``[d]`` (fp32): ``center: base``
    subtracts it from every feature before Circle Loss. Each class weighs the same whatever its size."""
    raw = extract_features(model, tok, prompts, layer, pooling, template, max_length, batch_size, autocast,
                           normalize=False)
    y = torch.tensor(list(labels))
    classes = sorted(set(y.tolist()))
    if len(classes) < 2:
        raise ValueError(f"class_mean_center needs prompts of both classes, got labels {classes}")
    return torch.stack([raw[y == c].mean(0) for c in classes]).mean(0)
