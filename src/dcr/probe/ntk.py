"""Empirical NTK blocks K_{So,Su}(x', x) of the last-position logits (paper 3.2 and appendix A.6).

For every prompt ``x`` and token ``i`` in its top-k set ``S_u``:

1. VJP: ``w = d z_i(x) / d theta_sub`` by backpropagation (theta_sub = last N decoder layers + LM head);
2. JVP: ``J(x') w`` for all prompts ``x'`` at once, either by central finite differences
   ``(z(x'; theta + eps w) - z(x'; theta - eps w)) / (2 eps)`` (``method="fd"``, the paper's scheme) or
   exactly by forward-mode AD over ``torch.func.functional_call`` (``method="jvp"``);
3. row slicing to the top-k set ``S_o`` of ``x'``.

Finite differences must run in fp32: a step of 1e-3 times a gradient entry is far below bf16's resolution
relative to the weights (8 mantissa bits), so ``theta + eps w == theta`` for most entries. The parameters are
restored from a saved copy (bit for bit), never by subtracting the step again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from dcr.models import get_layers

Batch = dict[str, torch.Tensor]
Params = dict[str, torch.nn.Parameter]
Direction = list[torch.Tensor]


def param_subset(model: Any, n_layers: int, include_head: bool = True) -> Params:
    """``{name: parameter}`` of the last ``n_layers`` decoder blocks and the LM head, each parameter once.

    A tied LM head (the embedding matrix) appears once, under the name ``named_parameters`` gives it.
    """
    modules: list[torch.nn.Module] = list(get_layers(model))[len(get_layers(model)) - n_layers:] if n_layers else []
    if include_head:
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (LM head)")
        modules.append(head)
    wanted = {id(p) for m in modules for p in m.parameters()}
    subset = {name: p for name, p in model.named_parameters() if id(p) in wanted}
    if not subset:
        raise ValueError("empty parameter subset: use ntk_layers >= 1 or include_head")
    return subset


def subset_size(params: Params) -> int:
    return sum(p.numel() for p in params.values())


def last_logits(model: Any, batch: Batch, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """fp32 logits at the last position of each (left-padded) row: ``[B, V]``.

    With ``params`` the forward is a ``torch.func.functional_call`` over those tensors (tied weights follow).
    """
    kwargs = {**batch, "logits_to_keep": 1, "use_cache": False}
    if params is None:
        out = model(**kwargs)
    else:
        out = torch.func.functional_call(model, params, args=(), kwargs=kwargs)
    return out.logits[:, -1].float()


def top_k_sets(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest logits per row: ``[B, V] -> [B, k]`` (descending)."""
    return logits.topk(min(k, logits.shape[-1]), dim=-1).indices


def row(batch: Batch, b: int) -> Batch:
    """Row ``b`` of a left-padded batch without its padding: ``[1, T_b]`` tensors."""
    keep = batch["attention_mask"][b].bool()
    return {key: val[b : b + 1][:, keep] for key, val in batch.items()}


def iter_vjp_directions(model: Any, params: Params, x: Batch, tokens: torch.Tensor) -> Iterator[Direction]:
    """``w_i = d z_i(x) / d theta_sub`` for each token id in ``tokens`` ``[k]``, one at a time (parameter-shaped grads).

    One forward; each direction is yielded before the next is computed, so a caller that keeps only part of it
    (the gram store) holds one direction at a time (at 1.5B the tied head's dense gradient alone is 0.9 GB).
    Frozen parameters (e.g. after a PEFT merge) are made to require grad for the call and restored after.
    """
    names = list(params)
    flags = [params[n].requires_grad for n in names]
    try:
        for n in names:
            params[n].requires_grad_(True)
        with torch.enable_grad():
            z = last_logits(model, x)[0]
            for j, tok in enumerate(tokens.tolist()):
                grads = torch.autograd.grad(z[tok], [params[n] for n in names], retain_graph=j < len(tokens) - 1,
                                            allow_unused=True)
                yield [g.detach() if g is not None else torch.zeros_like(params[n]) for g, n in zip(grads, names)]
    finally:
        for n, flag in zip(names, flags):
            params[n].requires_grad_(flag)


def vjp_directions(model: Any, params: Params, x: Batch, tokens: torch.Tensor) -> list[Direction]:
    """All of :func:`iter_vjp_directions` as a list: k lists of parameter-shaped grads."""
    return list(iter_vjp_directions(model, params, x, tokens))


@contextmanager
def perturbed(params: Params, direction: Direction, scale: float) -> Iterator[None]:
    """Parameters set to ``theta + scale * w`` inside the block; restored bit for bit from a copy afterwards."""
    saved = [p.detach().clone() for p in params.values()]
    try:
        with torch.no_grad():
            for p, w in zip(params.values(), direction):
                p.add_(w.to(p.dtype), alpha=scale)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params.values(), saved):
                p.copy_(s)


def fd_jvp(model: Any, params: Params, direction: Direction, batch: Batch, eps: float = 1e-3,
           unit_step: bool = False) -> torch.Tensor:
    """Central-difference ``J(x') w`` at the last position: ``[B, V]``.

    ``unit_step`` steps along ``w / ||w||`` by ``eps`` and rescales by ``||w||`` (same derivative, a step size
    that does not depend on the gradient's magnitude).
    """
    norm = torch.sqrt(sum((w.double() ** 2).sum() for w in direction)).item() if unit_step else 1.0
    if norm == 0.0:
        return torch.zeros_like(last_logits(model, batch))
    step = eps / norm
    with torch.no_grad():
        with perturbed(params, direction, step):
            plus = last_logits(model, batch)
        with perturbed(params, direction, -step):
            minus = last_logits(model, batch)
    return (plus - minus) / (2 * step)


def exact_jvp(model: Any, params: Params, direction: Direction, batch: Batch) -> torch.Tensor:
    """Exact ``J(x') w`` at the last position by forward-mode AD: ``[B, V]``.

    Needs an attention kernel with forward-mode support; see :func:`forward_ad_attention`.
    """
    names = list(params)
    primals = {n: params[n].detach() for n in names}
    tangents = {n: w.to(params[n].dtype) for n, w in zip(names, direction)}

    def f(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return last_logits(model, batch, p)

    with torch.no_grad():
        _, tangent = torch.func.jvp(f, (primals,), (tangents,))
    return tangent.float()


def _attn_impl(model: Any) -> str | None:
    return getattr(model.config, "_attn_implementation", None)


def _set_attn(model: Any, impl: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        model.config._attn_implementation = impl


@contextmanager
def forward_ad_attention(model: Any) -> Iterator[Callable[..., torch.Tensor]]:
    """Yield an exact-JVP routine that switches the model to ``eager`` attention the first time forward-mode AD
    fails in the fused SDPA kernel (e.g. ``_scaled_dot_product_flash_attention_for_cpu`` has no forward-AD
    formula; which kernel runs depends on padding, so the first padded batch decides). The original attention
    implementation is restored on exit.
    """
    before = _attn_impl(model)

    def jvp(model_: Any, params: Params, direction: Direction, batch: Batch) -> torch.Tensor:
        try:
            return exact_jvp(model_, params, direction, batch)
        except NotImplementedError:
            if _attn_impl(model_) == "eager":
                raise
            _set_attn(model_, "eager")
            return exact_jvp(model_, params, direction, batch)

    try:
        yield jvp
    finally:
        if before is not None and _attn_impl(model) != before:
            _set_attn(model, before)


def fd_function(eps: float = 1e-3, unit_step: bool = False) -> Callable[..., torch.Tensor]:
    """The finite-difference JVP as ``f(model, params, direction, batch) -> [B, V]``."""
    return lambda model, params, direction, batch: fd_jvp(model, params, direction, batch, eps, unit_step)


def _chunks(batch: Batch, size: int) -> list[Batch]:
    n = batch["input_ids"].shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


def kernel_blocks(model: Any, batch: Batch, params: Params, top_k: int, method: str = "fd", eps: float = 1e-3,
                  unit_step: bool = False, batch_size: int = 32,
                  progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """All blocks ``K[a, b] = K_{S_o(x_a), S_u(x_b)}(x_a, x_b)`` for the N prompts of ``batch``: ``[N, N, k, k]``.

    ``K[a, b][r, c] = d z_{S_o(a)[r]}(x_a) / d theta . d z_{S_u(b)[c]}(x_b) / d theta`` over theta_sub.
    Cost: ``N * k`` backward passes and ``N * k`` (jvp) or ``2 N * k`` (fd) forwards over all N prompts.
    """
    with torch.no_grad():
        sets = torch.cat([top_k_sets(last_logits(model, c), top_k) for c in _chunks(batch, batch_size)])
    n, k = sets.shape
    out = torch.zeros(n, n, k, k, dtype=torch.float64)
    with _jvp_routine(method, model, eps, unit_step) as jvp:
        for b in range(n):
            for c, w in enumerate(vjp_directions(model, params, row(batch, b), sets[b])):
                col = torch.cat([jvp(model, params, w, chunk) for chunk in _chunks(batch, batch_size)])
                out[:, b, :, c] = col.gather(1, sets).double()
            if progress is not None:
                progress(b + 1, n)
    return out


@contextmanager
def _jvp_routine(method: str, model: Any, eps: float, unit_step: bool) -> Iterator[Callable[..., torch.Tensor]]:
    if method == "jvp":
        with forward_ad_attention(model) as jvp:
            yield jvp
    elif method == "fd":
        yield fd_function(eps, unit_step)
    else:
        raise ValueError(f"method {method!r} unknown; use fd or jvp")


def normalised_norms(blocks: torch.Tensor) -> torch.Tensor:
    """``||K(x_a, x_b)||_F / ||K(x_a, x_a)||_F`` (paper 3.2): ``[N, N, k, k] -> [N, N]`` (diagonal = 1)."""
    norms = torch.linalg.matrix_norm(blocks, ord="fro")
    diag = norms.diagonal().clamp_min(torch.finfo(norms.dtype).tiny)
    return norms / diag[:, None]
