"""Surgical hooks change exactly the intended activations, are always removed, and match the baked export."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from dcr.errors import ModelError
from dcr.hooks import hidden_of, hooks
from dcr.models import get_layers
from dcr.steer.surgical import SurgicalSteerer, bake
from dcr.steer.writers import find_writers
from dcr.testing import tiny_lm


def _ids(tok: Any) -> dict[str, torch.Tensor]:
    enc = tok(["How do I kill a python process?", "Hi"], return_tensors="pt", padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _unit(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    return v / v.norm()


def _steerer(model: Any, w_f: float, w_h: float, layer: int = 2) -> SurgicalSteerer:
    d = model.config.hidden_size
    return SurgicalSteerer(_unit(d, 1), 0.7 * _unit(d, 2), layer, w_f, w_h)


def _no_hooks(model: Any) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@torch.no_grad()
def test_ablation_scales_the_direction_and_keeps_the_complement(tiny: tuple) -> None:
    model, tok = tiny
    st = _steerer(model, w_f=0.3, w_h=0.0)
    r = st.r_f_hat
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    raw: list[torch.Tensor] = []
    writers = find_writers(model).modules()
    with hooks(writers, [lambda m, a, o: raw.append(hidden_of(o).clone())] * len(writers)):
        with st.apply(model):
            with hooks(writers, [lambda m, a, o: seen.append(hidden_of(o).clone())] * len(writers)):
                model(**_ids(tok))
    raw = raw[-len(seen):]  # apply() runs one probe forward of its own first (find_writers)
    assert len(seen) == 1 + 2 * len(get_layers(model))
    for before, after in zip(raw, seen):
        assert torch.allclose(after @ r, 0.7 * (before @ r), atol=1e-6)
        comp_b = before - (before @ r).unsqueeze(-1) * r
        comp_a = after - (after @ r).unsqueeze(-1) * r
        assert torch.allclose(comp_a, comp_b, atol=1e-6)
        assert not torch.allclose(after, before)


@torch.no_grad()
def test_embedding_stream_is_ablated_exactly(tiny: tuple) -> None:
    model, tok = tiny
    st = _steerer(model, w_f=0.5, w_h=0.0)
    r = st.r_f_hat
    base = model(**_ids(tok), output_hidden_states=True).hidden_states[0]
    with st.apply(model):
        steered = model(**_ids(tok), output_hidden_states=True).hidden_states[0]
    assert torch.allclose(steered @ r, 0.5 * (base @ r), atol=1e-6)
    assert torch.allclose(steered - (steered @ r).unsqueeze(-1) * r, base - (base @ r).unsqueeze(-1) * r, atol=1e-6)


def _block_outputs(model: Any, tok: Any) -> list[torch.Tensor]:
    """Every block's output, recorded by hooks registered last (so they see any steering hook's change).

    (transformers' ``output_hidden_states`` records block outputs before later-registered hooks change them.)
    """
    outs: list[torch.Tensor] = []
    blocks = list(get_layers(model))
    with hooks(blocks, [lambda m, a, o: outs.append(hidden_of(o).clone())] * len(blocks)):
        model(**_ids(tok))
    return outs


@torch.no_grad()
def test_full_ablation_leaves_no_component_in_any_block_output(tiny_family: str) -> None:
    model, tok = tiny_lm(tiny_family)
    st = _steerer(model, w_f=1.0, w_h=0.0)
    with st.apply(model):
        outs = _block_outputs(model, tok)
    for h in outs:
        assert float((h @ st.r_f_hat).abs().max()) < 1e-5 * float(h.abs().max())
    plain = _block_outputs(model, tok)
    assert float((plain[-1] @ st.r_f_hat).abs().max()) > 1e-3  # the unsteered stream does carry it


@torch.no_grad()
def test_addition_only_touches_the_chosen_block_and_later(tiny: tuple) -> None:
    model, tok = tiny
    st = _steerer(model, w_f=0.0, w_h=1.5, layer=2)
    base = _block_outputs(model, tok)
    with st.apply(model):
        steered = _block_outputs(model, tok)
    for i in range(2):  # blocks before the steered one: bit-identical
        assert torch.equal(steered[i], base[i])
    assert torch.allclose(steered[2], base[2] + 1.5 * st.r_h, atol=1e-6)
    assert not torch.allclose(steered[3], base[3])


@torch.no_grad()
def test_hooks_are_removed_after_the_block_and_after_an_exception(tiny: tuple) -> None:
    model, tok = tiny
    st = _steerer(model, w_f=0.5, w_h=0.5)
    base = model(**_ids(tok)).logits
    with st.apply(model):
        steered = model(**_ids(tok)).logits
    assert not torch.allclose(steered, base)
    assert _no_hooks(model)
    assert torch.equal(model(**_ids(tok)).logits, base)
    with pytest.raises(RuntimeError, match="boom"):
        with st.apply(model):
            raise RuntimeError("boom")
    assert _no_hooks(model)
    assert torch.equal(model(**_ids(tok)).logits, base)


@pytest.mark.parametrize("family,overrides,w_h", [
    ("llama", {}, 0.0),
    ("qwen2", {"tie_word_embeddings": True}, 0.0),
    ("llama", {"mlp_bias": True}, 0.8),
])
@torch.no_grad()
def test_baked_equals_hooked(family: str, overrides: dict, w_h: float) -> None:
    model, tok = tiny_lm(family, **overrides)
    st = _steerer(model, w_f=0.6, w_h=w_h, layer=1)
    with st.apply(model):
        hooked = model(**_ids(tok)).logits
    baked_model = copy.deepcopy(model)
    info = bake(baked_model, st)
    assert info["ablation"] and info["addition"]
    assert info["untied_embeddings"] == bool(overrides.get("tie_word_embeddings"))
    baked = baked_model(**_ids(tok)).logits
    assert torch.allclose(baked, hooked, atol=1e-5)
    assert not torch.allclose(baked, model(**_ids(tok)).logits)


@torch.no_grad()
def test_addition_without_bias_is_reported_not_baked(tiny: tuple) -> None:
    model, _ = tiny
    info = bake(copy.deepcopy(model), _steerer(model, w_f=0.5, w_h=0.2))
    assert info["ablation"] and not info["addition"]


def test_bake_refuses_norm_writers_of_gemma3() -> None:
    model, _ = tiny_lm("gemma3")
    with pytest.raises(ModelError, match="cannot be baked"):
        bake(model, _steerer(model, w_f=0.5, w_h=0.0))


def test_wrong_hidden_size_is_a_clear_error(tiny: tuple) -> None:
    model, _ = tiny
    st = SurgicalSteerer(_unit(8, 0), _unit(8, 1), 1, 0.5, 0.1)
    with pytest.raises(ModelError, match="hidden size"):
        with st.apply(model):
            pass
    assert _no_hooks(model)
