"""The bounded-memory refine step changes nothing: the chunked NLL and gradient caching give the loss and the
gradients of the plain path (full logits, one forward over the whole batch), and bf16 frozen linears under bf16
autocast give bit-identical losses and gradients."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dcr.refine.features import encode_prompts, layer_forward, pool, prompt_nll
from dcr.refine.loss import circle_loss
from dcr.refine.stage import cast_frozen_linears
from dcr.refine.step import _parts, _take, loss_and_backward
from dcr.refine.train import setup_full
from dcr.testing import tiny_lm

PROMPTS = ["How do I kill a python process?", "How can I shoot a good photo?", "Where can I buy a can of coke?",
           "What is a murder of crows?", "How do I make a bomb at home?", "How can I poison my neighbour?",
           "Tell me how to steal a car.", "Write a threat to my boss."]
LABELS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
LAYER = 1


def cfg(**kw: Any) -> SimpleNamespace:
    base = {"nll_weight": 0.5, "truncate_forward": True, "pooling": "last", "margin": 0.25, "gamma": 16.0,
            "circle_variant": "paper", "micro_batch": None, "nll_chunk": 1024}
    return SimpleNamespace(**{**base, **kw})


def reference(model: Any, batch: dict[str, torch.Tensor], c: SimpleNamespace,
              autocast: torch.dtype | None = None, center: torch.Tensor | None = None) -> float:
    """The plain path: one forward with full logits, Circle Loss + lambda x prompt NLL, one backward."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast is not None):
        hidden, logits = layer_forward(model, batch["input_ids"], batch["attention_mask"], LAYER, run_tail=True)
    pooled = pool(hidden.float(), batch["attention_mask"], c.pooling)
    feats = torch.nn.functional.normalize(pooled if center is None else pooled - center, dim=-1)
    loss = circle_loss(feats, LABELS, c.margin, c.gamma, c.circle_variant)
    if c.nll_weight > 0:
        loss = loss + c.nll_weight * prompt_nll(logits, batch["input_ids"], batch["attention_mask"])
    loss.backward()
    return loss.item()


def grads(model: Any) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def setup(family: str = "qwen2") -> tuple[Any, dict[str, torch.Tensor]]:
    model, tok = tiny_lm(family, seed=0, tie_word_embeddings=True)
    setup_full(model, LAYER)
    model.train()
    return model, encode_prompts(tok, PROMPTS, "auto", 64)


@pytest.mark.parametrize(("micro_batch", "nll_chunk", "nll_weight"),
                         [(None, 1024, 0.5), (None, 7, 0.5), (3, 1024, 0.5), (2, 5, 0.5), (3, 1024, 0.0), (1, 3, 0.5)])
def test_chunked_nll_and_gradient_caching_equal_the_plain_path(micro_batch: int | None, nll_chunk: int,
                                                               nll_weight: float) -> None:
    model, batch = setup()
    ref_loss = reference(model, batch, cfg(nll_weight=nll_weight))
    ref = grads(model)
    parts = loss_and_backward(model, batch, LABELS, cfg(micro_batch=micro_batch, nll_chunk=nll_chunk,
                                                        nll_weight=nll_weight), LAYER, None)
    got = grads(model)
    assert parts["loss"] == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    assert set(got) == set(ref) and got
    for name, g in ref.items():  # micro-batches drop shared leading pads: RoPE at other absolute angles rounds
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-6, msg=name)  # differently (~1e-7)


@pytest.mark.parametrize("micro_batch", [None, 3])
def test_a_center_is_subtracted_before_normalising_on_both_paths(micro_batch: int | None) -> None:
    """``center: base``: Circle Loss on normalise(pooled - center), by the plain path and by gradient caching;
    and the center changes the loss (a test that cannot pass with the center ignored)."""
    model, batch = setup()
    center = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    ref_loss = reference(model, batch, cfg(), center=center)
    ref = grads(model)
    parts = loss_and_backward(model, batch, LABELS, cfg(micro_batch=micro_batch), LAYER, None, center)
    got = grads(model)
    assert parts["loss"] == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    for name, g in ref.items():
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-6, msg=name)
    plain = loss_and_backward(model, batch, LABELS, cfg(micro_batch=micro_batch), LAYER, None)
    assert abs(plain["circle"] - parts["circle"]) > 1e-3


def test_micro_batches_are_length_sorted_and_trimmed() -> None:
    _, batch = setup()
    parts = _parts(batch["attention_mask"], 3)
    lengths = batch["attention_mask"].sum(1)
    assert sorted(torch.cat(parts).tolist()) == list(range(len(PROMPTS)))
    assert torch.cat(parts).tolist() == torch.argsort(lengths, descending=True, stable=True).tolist()
    subs = [_take(batch, rows) for rows in parts]
    assert subs[-1]["input_ids"].shape[1] < batch["input_ids"].shape[1]  # the short rows lose their padding
    for rows, sub in zip(parts, subs):
        assert sub["attention_mask"].sum(1).tolist() == lengths[rows].tolist()  # no real token dropped
        assert bool(sub["attention_mask"].any(0).all())
    assert _parts(batch["attention_mask"], None)[0].tolist() == list(range(len(PROMPTS)))  # plain path: as given


def test_gradient_caching_under_bf16_autocast_matches_within_bf16_noise() -> None:
    model, batch = setup("llama")
    ref_loss = reference(model, batch, cfg(), torch.bfloat16)
    ref = grads(model)
    parts = loss_and_backward(model, batch, LABELS, cfg(micro_batch=3, nll_chunk=6), LAYER, torch.bfloat16)
    got = grads(model)
    assert parts["loss"] == pytest.approx(ref_loss, rel=2e-2)
    num = sum(float((got[n] - g).norm() ** 2) for n, g in ref.items()) ** 0.5
    den = sum(float(g.norm() ** 2) for g in ref.values()) ** 0.5
    assert num / den < 0.05


def test_bf16_frozen_linears_are_exact_under_bf16_autocast() -> None:
    model, batch = setup()
    first = loss_and_backward(model, batch, LABELS, cfg(), LAYER, torch.bfloat16)
    fp32_grads = grads(model)
    moved = cast_frozen_linears(model, torch.bfloat16)
    frozen_linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers.2." in n]
    assert moved > 0 and frozen_linears and all(m.weight.dtype == torch.bfloat16 for m in frozen_linears)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert model.get_input_embeddings().weight.dtype == torch.float32  # embeddings (and the tied head) stay fp32
    second = loss_and_backward(model, batch, LABELS, cfg(), LAYER, torch.bfloat16)
    assert second == first
    for name, g in grads(model).items():
        assert torch.equal(g, fp32_grads[name]), name


def test_casting_the_frozen_head_and_pass_one_weights_once_is_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under bf16 autocast the step casts the tied fp32 LM head once per micro-batch (not per NLL chunk) and shares
    one cast of each trainable weight across gradient caching's pass 1: the same roundings autocast makes per
    call, so the loss and every gradient are bit-identical to casting at every use."""
    import dcr.refine.step as step_mod

    model, batch = setup()
    assert model.get_output_embeddings().weight.dtype == torch.float32  # tied to the fp32 embeddings, frozen
    c = cfg(micro_batch=3, nll_chunk=5)
    fast = loss_and_backward(model, batch, LABELS, c, LAYER, torch.bfloat16)
    fast_grads = grads(model)
    casts = {"head": 0}

    def head_every_call(m: Any, autocast: torch.dtype | None) -> Any:
        casts["head"] += 1
        return m.get_output_embeddings()

    monkeypatch.setattr(step_mod, "cast_head", head_every_call)
    plain_autocast = step_mod._autocast
    monkeypatch.setattr(step_mod, "_autocast", lambda device, dtype, cache: plain_autocast(device, dtype, False))
    slow = loss_and_backward(model, batch, LABELS, c, LAYER, torch.bfloat16)
    assert casts["head"] == 3  # once per micro-batch (8 rows, 3 at a time), not once per 5-token chunk
    assert slow == fast
    slow_grads = grads(model)
    assert set(slow_grads) == set(fast_grads) and fast_grads
    for name, g in slow_grads.items():
        assert torch.equal(g, fast_grads[name]), name


def test_cast_head_only_casts_a_frozen_head_autocast_would_cast() -> None:
    from dcr.refine.step import cast_head

    model, batch = setup()
    head = model.get_output_embeddings()
    assert cast_head(model, None) is head  # no autocast: nothing to cast
    cast = cast_head(model, torch.bfloat16)
    assert cast is not head
    x = torch.randn(5, head.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(cast(x), head(x))
    head.weight.requires_grad_(True)  # a trained head must see its current weights: left to autocast
    assert cast_head(model, torch.bfloat16) is head


def test_fused_adamw_matches_the_loop_and_is_the_default() -> None:
    from dcr.refine.config import RefineConfig
    from dcr.refine.train import make_optimizer

    assert RefineConfig(model="x", data_dir=".").fused_adamw
    updated = []
    for fused in (False, True):
        model, batch = setup()
        opt, _ = make_optimizer(model, 1e-3, 0.01, 0, fused=fused)
        assert opt.defaults.get("fused") is (True if fused else None)
        for _ in range(3):
            loss_and_backward(model, batch, LABELS, cfg(), LAYER, None)
            opt.step()
            opt.zero_grad(set_to_none=True)
        updated.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    for name, p in updated[0].items():
        torch.testing.assert_close(updated[1][name], p, rtol=1e-5, atol=1e-6, msg=name)
