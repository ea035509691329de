"""Multi-process runs (``torchrun`` / ``accelerate launch``): who is the main process, and how ranks wait.

Launchers set ``WORLD_SIZE`` and ``RANK``; with one process everything here is a no-op, so single-process runs
never initialise ``torch.distributed``. The process group itself comes from ``accelerate.PartialState`` (NCCL
on GPUs, gloo on CPU), which the Hugging Face Trainer shares.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SOLO: contextvars.ContextVar[bool] = contextvars.ContextVar("dcr_solo", default=False)


def launched() -> int:
    """Processes the launcher started (``WORLD_SIZE``; 1 without a launcher), whatever the work at hand."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def world_size() -> int:
    """Processes taking part in the work at hand: 1 inside :func:`solo`."""
    return 1 if _SOLO.get() else launched()


@contextlib.contextmanager
def solo() -> Iterator[None]:
    """The main process works alone in this block (the other ranks have finished their share)."""
    token = _SOLO.set(True)
    try:
        yield
    finally:
        _SOLO.reset(token)


def is_main() -> bool:
    """True in the process that owns a stage's files (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def _state() -> Any:
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # without a GPU: gloo over CPU processes


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def from_main(value: Any) -> Any:
    """The main process's ``value``, on every process."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    _state()
    return broadcast_object_list([value], from_process=0)[0]


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on the main process first, then on the others (e.g. fill a cache, then read it)."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def gather(items: list[Any]) -> list[Any]:
    """Every rank's ``items`` concatenated in rank order, on every rank."""
    if world_size() == 1:
        return list(items)
    from accelerate.utils import gather_object

    _state()
    return list(gather_object(items))


def shard_chunks(fn: Callable[[list[T]], list[R]], items: Sequence[T], chunk: int) -> list[R]:
    """``fn(items)``, for an ``fn`` that works through its list in consecutive chunks of ``chunk`` items, each chunk on
    its own (one batch per forward). Under a launch, chunk k runs on rank k mod the world size and every rank gets
    every result, in input order: the values one process gets from the same chunks. Every rank must call it."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if world_size() == 1:
        return fn(list(items))
    starts = range(rank() * chunk, len(items), world_size() * chunk)
    mine = [x for s in starts for x in items[s:s + chunk]]  # only the global last chunk is short: it ends the list
    out = fn(mine) if mine else []
    if len(out) != len(mine):
        raise ValueError(f"fn returned {len(out)} results for {len(mine)} items")
    pieces = gather([(s, out[j * chunk:j * chunk + chunk]) for j, s in enumerate(starts)])
    return [r for _, piece in sorted(pieces, key=lambda p: p[0]) for r in piece]


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def gather_with_grad(x: Any) -> Any:
    """Every rank's ``x`` (same shape) concatenated in rank order along dim 0, with gradients flowing back to each
    rank's own part (``torch.distributed.nn``). Under DDP-style gradient averaging the result is the gradient of
    one process holding the whole batch."""
    if world_size() == 1:
        return x
    import torch
    from torch.distributed.nn.functional import all_gather

    _state()
    return torch.cat(all_gather(x.contiguous()), dim=0)


def sum_all(x: Any) -> Any:
    """``x`` summed over the ranks (a tensor; no gradient)."""
    if world_size() == 1:
        return x
    import torch.distributed as dist

    _state()
    x = x.clone()
    dist.all_reduce(x)
    return x


def average_gradients(params: list[Any]) -> None:
    """Average the ``.grad`` of ``params`` over the ranks, as DDP does (one flat all-reduce)."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    _state()
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    at = 0
    for g in grads:
        g.copy_(flat[at:at + g.numel()].view_as(g))
        at += g.numel()
