"""Find what writes into the residual stream of any HF decoder, by measurement instead of per-family code.

One probe forward (in fp32; every weight gets its own dtype back afterwards) records each block's input and
output and the output of every submodule. The *writers* of a block are the fewest direct children whose outputs
sum to the block's update ``out - in`` (llama / qwen2: ``self_attn`` and ``mlp``; gemma3, which normalises each
branch before adding it: ``post_attention_layernorm`` and ``post_feedforward_layernorm``). The embedding module
writes the initial stream. For baking, a writer's *bake target* is the ``nn.Linear`` inside it (or itself) whose
output is exactly the writer's output (llama: ``o_proj`` and ``down_proj``); a writer without one (a norm)
cannot be baked.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from dcr.errors import ModelError
from dcr.hooks import hidden_of, hooks
from dcr.models import get_layers


@dataclass
class Writers:
    """The modules that add into the residual stream: the embedding, then per block its writer children."""

    embedding: torch.nn.Module
    blocks: list[list[torch.nn.Module]]
    targets: list[list[torch.nn.Linear | None]]

    @property
    def bakeable(self) -> bool:
        return all(t is not None for per in self.targets for t in per)

    def modules(self) -> list[torch.nn.Module]:
        return [self.embedding] + [w for per in self.blocks for w in per]


def _probe_inputs(model: Any) -> torch.Tensor:
    vocab = int(getattr(model.get_input_embeddings(), "num_embeddings", 16))
    ids = (torch.arange(7) * 5 + 3) % max(vocab, 2)
    return ids.unsqueeze(0).to(next(model.parameters()).device)


@contextmanager
def _fp32(model: Any) -> Iterator[None]:
    """Run the block in fp32 (bf16 rounding hides small writers); every tensor gets its own dtype back (lossless)."""
    saved = [(t, t.data) for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()]
    try:
        for t, data in saved:
            t.data = data.float()
        yield
    finally:
        for t, data in saved:
            t.data = data


@torch.no_grad()
def _record(model: Any) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """(block inputs, block outputs, submodule outputs) of one probe forward, keyed by ``id(module)``."""
    blocks = list(get_layers(model))
    ins: dict[int, torch.Tensor] = {}
    outs: dict[int, torch.Tensor] = {}
    subs: dict[int, torch.Tensor] = {}

    def pre(m: Any, args: Any, kwargs: Any) -> None:
        ins[id(m)] = (args[0] if args else kwargs["hidden_states"]).detach()

    def post(m: Any, _a: Any, out: Any) -> None:
        outs[id(m)] = hidden_of(out).detach()

    def sub(m: Any, _a: Any, out: Any) -> None:
        h = hidden_of(out)
        if isinstance(h, torch.Tensor):
            subs[id(m)] = h.detach()

    inner = [m for b in blocks for m in b.modules() if m is not b] + [model.get_input_embeddings()]
    with _fp32(model), hooks(blocks, [pre] * len(blocks), pre=True, with_kwargs=True), \
            hooks(blocks, [post] * len(blocks)), hooks(inner, [sub] * len(inner)):
        model(input_ids=_probe_inputs(model), use_cache=False)
    return ins, outs, subs


def _tol(scale: float, dtype: torch.dtype) -> float:
    """Rounding tolerance for values of magnitude ``scale`` computed in ``dtype``."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return 16 * eps * (scale + 1e-6)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a.float() - b.float()).abs().max()) <= _tol(float(b.abs().max()), b.dtype)


def _writers_of(block: torch.nn.Module, delta: torch.Tensor, subs: dict[int, torch.Tensor], scale: float,
                dtype: torch.dtype) -> list[torch.nn.Module]:
    """The combination of 1-3 children whose outputs sum closest to ``delta`` (fewest on ties), if close enough."""
    children = [c for c in block.children() if id(c) in subs and subs[id(c)].shape == delta.shape]
    best: tuple[float, list[torch.nn.Module]] = (float("inf"), [])
    for k in (1, 2, 3):
        for combo in itertools.combinations(children, k):
            total = sum((subs[id(c)].float() for c in combo), torch.zeros_like(delta, dtype=torch.float32))
            err = float((total - delta).abs().max())
            if err < best[0]:
                best = (err, list(combo))
    return best[1] if best[0] <= _tol(scale, dtype) else []


def _target_of(writer: torch.nn.Module, subs: dict[int, torch.Tensor]) -> torch.nn.Linear | None:
    if isinstance(writer, torch.nn.Linear):
        return writer
    out = subs[id(writer)]
    for m in writer.modules():
        if isinstance(m, torch.nn.Linear) and id(m) in subs and torch.equal(subs[id(m)], out):
            return m
    return None


def find_writers(model: Any) -> Writers:
    """The residual-stream writers of ``model`` (see the module docstring); ModelError if they are not found."""
    blocks = list(get_layers(model))
    ins, outs, subs = _record(model)
    emb = model.get_input_embeddings()
    name = type(model).__name__
    if id(emb) not in subs or not _close(subs[id(emb)], ins[id(blocks[0])]):
        raise ModelError(f"{name}: the input of block 0 is not the embedding output (extra position embeddings?); "
                         "the residual-stream writers cannot be identified. Fix: use a rotary-position decoder")
    per_block, targets = [], []
    for i, block in enumerate(blocks):
        x_in, x_out = ins[id(block)], outs[id(block)]
        delta = x_out.float() - x_in.float()
        scale = max(float(x_in.abs().max()), float(x_out.abs().max()))
        found = _writers_of(block, delta, subs, scale, x_out.dtype)
        if not found:
            raise ModelError(f"{name}: no combination of the children of block {i} sums to its residual update; "
                             "cannot place the ablation hooks. Fix: this architecture is not supported by dcr steer")
        per_block.append(found)
        targets.append([_target_of(w, subs) for w in found])
    return Writers(emb, per_block, targets)
