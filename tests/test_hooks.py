"""hooks(): handles are removed after the block and after an exception; hidden-state helpers."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dcr.hooks import hidden_of, hooks, replace_hidden
from dcr.models import get_layers
from dcr.testing import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _n_hooks(modules: list[torch.nn.Module]) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules)


def test_hooks_run_and_are_removed() -> None:
    model, tok = tiny_lm("llama")
    layers = list(get_layers(model))
    ids = tok(["hello"], return_tensors="pt")
    seen: list[int] = []

    def make(i: int) -> Any:
        def fn(module: torch.nn.Module, args: Any, output: Any) -> None:
            seen.append(i)

        return fn

    with torch.no_grad(), hooks(layers[:2], [make(0), make(1)]):
        assert _n_hooks(layers) == 2
        model(**ids)
    assert seen == [0, 1]
    assert _n_hooks(layers) == 0
    with torch.no_grad():
        model(**ids)
    assert seen == [0, 1]


def test_hooks_removed_after_exception() -> None:
    model, tok = tiny_lm("qwen2")
    layers = list(get_layers(model))
    with pytest.raises(RuntimeError, match="inside"), hooks(layers, [lambda *a: None] * len(layers), pre=True):
        assert _n_hooks(layers) == len(layers)
        raise RuntimeError("inside")
    assert _n_hooks(layers) == 0


def test_hook_that_raises_is_removed() -> None:
    model, tok = tiny_lm("llama")
    layers = list(get_layers(model))

    def bad(*a: Any) -> None:
        raise ValueError("hook failed")

    with pytest.raises(ValueError, match="hook failed"), torch.no_grad(), hooks([layers[1]], [bad]):
        model(**tok(["x"], return_tensors="pt"))
    assert _n_hooks(layers) == 0


def test_mismatched_lengths() -> None:
    model, _ = tiny_lm("llama")
    layers = list(get_layers(model))
    with pytest.raises(ValueError, match="2 modules but 1 hook"), hooks(layers[:2], [lambda *a: None]):
        pass
    assert _n_hooks(layers) == 0


def test_replace_hidden_changes_output() -> None:
    model, tok = tiny_lm("llama")
    layers = get_layers(model)
    ids = tok(["hello"], return_tensors="pt")
    with torch.no_grad():
        base = model(**ids).logits

        def zero(module: torch.nn.Module, args: Any, output: Any) -> Any:
            return replace_hidden(output, torch.zeros_like(hidden_of(output)))

        with hooks([layers[-1]], [zero]):
            changed = model(**ids).logits
        after = model(**ids).logits
    assert not torch.allclose(base, changed)
    assert torch.allclose(base, after)


def test_hidden_helpers() -> None:
    t = torch.ones(2, 3)
    assert hidden_of(t) is t and hidden_of((t, "x")) is t
    new = torch.zeros(2, 3)
    assert replace_hidden(t, new) is new
    out = replace_hidden((t, "x", 3), new)
    assert out[0] is new and out[1:] == ("x", 3)
