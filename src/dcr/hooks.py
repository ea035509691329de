"""One forward-hook context manager that always removes its handles."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def hooks(
    modules: Sequence[torch.nn.Module],
    fns: Sequence[Callable[..., Any]],
    pre: bool = False,
    with_kwargs: bool = False,
) -> Iterator[None]:
    """Register ``fns[i]`` on ``modules[i]`` (forward or forward-pre) for the block; always remove."""
    if len(modules) != len(fns):
        raise ValueError(f"{len(modules)} modules but {len(fns)} hook functions")
    handles = []
    try:
        for module, fn in zip(modules, fns):
            if pre:
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))
            else:
                handles.append(module.register_forward_hook(fn, with_kwargs=with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a decoder layer's output (a tensor or a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """``output`` with its hidden state replaced (keeps the rest of a tuple)."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
