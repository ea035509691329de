"""One DCR optimisation step's loss and gradients, in bounded memory: Circle Loss at layer l over the whole
batch, plus lambda x the prompt NLL.

Two memory bounds, neither of which changes the loss or the gradients (``tests/refine/test_step.py``):

- **Chunked NLL.** The LM head is never applied to a whole batch: the final hidden states (the head's input,
  captured by a pre-hook that ends the forward there) are multiplied with the head ``nll_chunk`` tokens at a
  time, each chunk under activation checkpointing, so at most one chunk's ``[tokens, vocab]`` logits exist at
  once (``tokens x 152k`` floats for Qwen2.5 instead of ``batch x length x 152k``).
- **Gradient caching** (Gao et al. 2021) when ``micro_batch`` is smaller than the batch: (1) the layer-l
  features of every micro-batch are computed without a graph (the forward stops at l); (2) Circle Loss is taken
  on the whole batch's features and backpropagated to them; (3) each micro-batch is run again with its graph
  and backpropagated with its slice of that feature gradient, plus its share of the NLL term. Each pass
  restores the RNG state of the first (dropout sees the same masks). Activation memory is that of one
  micro-batch; the loss is exactly batch 32's, and the gradients equal it up to float summation order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from dcr.chunked import chunked_cross_entropy, head_frozen
from dcr.dist import gather_with_grad, sum_all, world_size
from dcr.hooks import hidden_of, hooks
from dcr.models import get_layers
from dcr.refine.features import StopForward, check_layer, nll_targets, pool
from dcr.refine.loss import circle_loss
from dcr.stage import trim_heap


def forward_to_head(model: Any, batch: dict[str, torch.Tensor], layer: int,
                    tail: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The hidden state after block ``layer`` and, when ``tail``, the LM head's input ``[B, T, d]`` (the final
    hidden states after the last norm). The head itself is never run; without ``tail`` the forward stops at l."""
    block = get_layers(model)[check_layer(model, layer)]
    captured: dict[str, torch.Tensor] = {}

    def grab_block(_m: torch.nn.Module, _i: Any, output: Any) -> None:
        captured["layer"] = hidden_of(output)
        if not tail:
            raise StopForward

    def grab_head(_m: torch.nn.Module, args: tuple[Any, ...]) -> None:
        captured["final"] = args[0]
        raise StopForward

    head = model.get_output_embeddings()
    with hooks([block], [grab_block]), hooks([head], [grab_head], pre=True):
        try:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        except StopForward:
            pass
    if "layer" not in captured or (tail and "final" not in captured):
        raise RuntimeError(f"the forward did not reach block {layer}{' and the LM head' if tail else ''}")
    return captured["layer"], captured.get("final")


def _softcap(model: Any) -> float | None:
    config = getattr(model.config, "text_config", None) or model.config
    return getattr(config, "final_logit_softcapping", None)


def cast_head(model: Any, autocast: torch.dtype | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The LM head as a function of its input. A frozen head whose weight autocast would cast on every call (an
    fp32 head tied to the frozen embeddings) is cast here, once per micro-batch, instead of by autocast at every
    NLL chunk (233 M weights per cast at 1.5B). The rounding is the one autocast applies, so logits and
    gradients are unchanged (tests/refine/test_step.py)."""
    head = model.get_output_embeddings()
    if (autocast is None or not isinstance(head, torch.nn.Linear) or not head_frozen(model)
            or head.weight.dtype == autocast):
        return head
    weight = head.weight.detach().to(autocast)
    bias = None if head.bias is None else head.bias.detach().to(autocast)
    return lambda x: F.linear(x, weight, bias)


def head_nll_sum(model: Any, final: torch.Tensor, batch: dict[str, torch.Tensor], chunk: int,
                 autocast: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token NLL (fp32) over the prompt tokens and their number, from the head's input ``final``.

    A target counts when it and the token before it are both real tokens (as ``prompt_nll``). The head runs on
    ``chunk`` tokens at a time (:func:`dcr.chunked.chunked_cross_entropy`): one chunk's logits exist at once,
    forward and backward. The head is frozen in refine, so each chunk's gradient is taken in the forward and the
    head's bf16 copy (:func:`cast_head`) is freed before the backward pass.
    """
    mask, ids = batch["attention_mask"], batch["input_ids"]
    keep = nll_targets(mask)
    h, y = final[:, :-1][keep], ids[:, 1:][keep]
    head, cap = cast_head(model, autocast), _softcap(model)
    device_type = final.device.type

    def logits_of(h_part: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            logits = head(h_part)
        return torch.tanh(logits.float() / cap) * cap if cap else logits

    total = chunked_cross_entropy(logits_of, h, y, chunk, frozen=head_frozen(model))
    return total, keep.sum()


def _autocast(device_type: str, autocast: torch.dtype | None, cache: bool) -> torch.autocast:
    return torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None,
                          cache_enabled=cache)


def _features(model: Any, batch: dict[str, torch.Tensor], layer: int, cfg: Any, autocast: torch.dtype | None,
              tail: bool, cache: bool = False,
              center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled layer-l features, minus ``center`` when given (``RefineConfig.center``), normalised (and the head's
    input when ``tail``). ``cache``: keep autocast's bf16
    copies of the trainable weights for an enclosing autocast context (gradient caching's pass 1, where all
    micro-batches then share one cast of each weight). Off by default: each weight is used once per forward,
    and under activation checkpointing the cache would hold a bf16 copy of every trainable weight until the
    forward ends (1.3 GB at 1.5B) for nothing."""
    with _autocast(batch["input_ids"].device.type, autocast, cache):
        hidden, final = forward_to_head(model, batch, layer, tail)
    feats = pool(hidden.float(), batch["attention_mask"], cfg.pooling)
    return F.normalize(feats if center is None else feats - center.to(feats.device), dim=-1), final


def _parts(mask: torch.Tensor, size: int | None) -> list[torch.Tensor]:
    """Row indices of each micro-batch: rows in length order (longest first), ``size`` at a time, so each
    micro-batch can drop the padding columns none of its rows uses (:func:`_take`)."""
    n = mask.shape[0]
    if not size or size >= n:
        return [torch.arange(n)]
    order = torch.argsort(mask.sum(1), descending=True, stable=True)
    return [order[s:s + size] for s in range(0, n, size)]


def _take(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Those rows, without the columns that are padding in all of them. Rows are left-padded and the model's
    positions are relative (RoPE), so dropping a shared run of leading pads changes no feature or NLL beyond
    float rounding (tests/refine/test_step.py)."""
    sub = {k: v[rows] for k, v in batch.items()}
    used = sub["attention_mask"].any(0).nonzero()
    if not len(used):
        return sub
    lo, hi = int(used[0]), int(used[-1]) + 1
    return {k: v[:, lo:hi] for k, v in sub.items()}


def _one_graph(model: Any, batch: dict[str, torch.Tensor], labels: torch.Tensor, cfg: Any, layer: int,
               autocast: torch.dtype | None, tail: bool, scale: torch.Tensor,
               center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Circle Loss, NLL sum) of the whole batch: one forward, one backward (the plain path). Running the forward
    in length-sorted 8-row chunks was measured and dropped: 0.98x the tokens/s at 0.5B (BENCHMARKS.md)."""
    feats, final = _features(model, batch, layer, cfg, autocast, tail, center=center)
    nll = torch.zeros(())
    if cfg.nll_weight > 0:
        nll = head_nll_sum(model, final, batch, getattr(cfg, "nll_chunk", 256), autocast)[0]
    circle = circle_loss(gather_with_grad(feats), gather_with_grad(labels), cfg.margin, cfg.gamma, cfg.circle_variant)
    loss = circle + scale * nll if cfg.nll_weight > 0 else circle
    loss.backward()
    return circle, nll.detach()


def _cached(model: Any, batch: dict[str, torch.Tensor], labels: torch.Tensor, cfg: Any, layer: int,
            autocast: torch.dtype | None, tail: bool, scale: torch.Tensor,
            center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Circle Loss, NLL sum) by gradient caching over ``cfg.micro_batch`` rows (module docstring)."""
    parts = _parts(batch["attention_mask"], cfg.micro_batch)
    states, feats = [], []
    device_type = batch["input_ids"].device.type
    # pass 1: every micro-batch's features, no graph; one autocast cast of each trainable weight for all of them
    # (no activations are kept here, so the bf16 copies do not add to the step's peak)
    with torch.no_grad(), _autocast(device_type, autocast, True):
        for rows in parts:
            states.append(torch.get_rng_state())
            feats.append(_features(model, _take(batch, rows), layer, cfg, autocast, False, cache=True,
                                   center=center)[0])
    leaf = torch.cat(feats).requires_grad_(True)
    order = torch.cat(parts)  # leaf row j is batch row order[j]; Circle Loss does not depend on row order
    circle = circle_loss(gather_with_grad(leaf), gather_with_grad(labels[order]), cfg.margin, cfg.gamma,
                         cfg.circle_variant)
    circle.backward()
    nll_total, at = torch.zeros(()), 0
    for i, rows in enumerate(parts):  # pass 2: each micro-batch with its graph and its slice of the gradient
        torch.set_rng_state(states[i])
        sub = _take(batch, rows)
        feats_i, final = _features(model, sub, layer, cfg, autocast, tail, center=center)
        loss = (feats_i * leaf.grad[at:at + len(rows)]).sum()
        at += len(rows)
        if cfg.nll_weight > 0:
            nll_sum, _ = head_nll_sum(model, final, sub, getattr(cfg, "nll_chunk", 256), autocast)
            loss = loss + scale * nll_sum
            nll_total = nll_total + nll_sum.detach()
        loss.backward()
        if batch["input_ids"].device.type == "cpu":
            trim_heap()  # glibc keeps each micro-batch's freed activations resident otherwise
    return circle, nll_total


def loss_and_backward(model: Any, batch: dict[str, torch.Tensor], labels: torch.Tensor, cfg: Any, layer: int,
                      autocast: torch.dtype | None, center: torch.Tensor | None = None) -> dict[str, float]:
    """Circle Loss (+ lambda x NLL) of the batch; gradients accumulated into ``.grad``. Returns the loss parts.
    ``center``: subtracted from every pooled feature before normalising (``RefineConfig.center``)."""
    nll_on = cfg.nll_weight > 0
    tail = nll_on or not cfg.truncate_forward
    n_tok = sum_all(nll_targets(batch["attention_mask"]).sum())
    scale = cfg.nll_weight / n_tok.clamp_min(1) * world_size()  # global token mean; x world: grads are averaged
    micro = getattr(cfg, "micro_batch", None)
    run = _cached if micro and micro < len(labels) else _one_graph
    circle, nll_total = run(model, batch, labels, cfg, layer, autocast, tail, scale, center)
    nll_value = float(sum_all(nll_total) / n_tok.clamp_min(1)) if nll_on else float("nan")
    total = circle.item() + cfg.nll_weight * nll_value if nll_on else circle.item()
    return {"loss": total, "circle": circle.item(), "nll": nll_value}
