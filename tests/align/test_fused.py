"""The fused LoRA forward (dcr.align.fused) against peft's own: same outputs, loss and gradients up to float
rounding, in train mode (dropout on), in eval mode and under bf16 autocast; peft's forward wherever the fused one
does not apply; and one align stage with fused_lora on against off."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from dcr.align.dropout import use_gap_dropout
from dcr.align.fused import fuse_lora
from dcr.align.train import Collator, encode, label_loss


def _model(tiny_dir: Path, dtype: torch.dtype = torch.float32, dropout: float = 0.0, **lora: Any) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=dtype),
                          LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, init_lora_weights=False,
                                     target_modules="all-linear", task_type="CAUSAL_LM", **lora))


def _batch(tiny_dir: Path) -> dict[str, torch.Tensor]:
    from dcr.models import load_tokenizer

    tok = load_tokenizer(str(tiny_dir))
    rows = [{"prompt": "say hi", "response": "hi there"}, {"prompt": "count to three please", "response": "1 2 3"},
            {"prompt": "name a colour", "response": "a deep and quiet blue, like the sea at night"}]
    return Collator(tok.pad_token_id)([encode(tok, r, "auto", 64) for r in rows])


def _loss_and_grads(model: Any, batch: dict[str, torch.Tensor], frozen_head: bool = False,
                    seed: int = 1) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)  # the same dropout masks for both forwards
    loss = label_loss(model, batch, frozen_head=frozen_head)
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return loss.item(), grads


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float, atol: float) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fused_lora_matches_peft_forward_loss_and_gradients(tiny_dir: Path, dropout: float) -> None:
    batch = _batch(tiny_dir)
    model = _model(tiny_dir, dropout=dropout)
    use_gap_dropout(model)
    model.train()
    loss_peft, grads_peft = _loss_and_grads(model, batch)
    n = sum(1 for m in model.modules() if hasattr(m, "lora_A"))
    assert fuse_lora(model) == n > 0
    loss_fused, grads_fused = _loss_and_grads(model, batch, frozen_head=True)
    assert loss_fused == pytest.approx(loss_peft, rel=1e-5)
    _assert_close(grads_fused, grads_peft, rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        fused = model(**batch).logits
    for m in model.modules():
        if "forward" in vars(m):
            del m.forward  # back to peft's forward
    with torch.no_grad():
        torch.testing.assert_close(fused, model(**batch).logits, rtol=1e-5, atol=1e-5)


def test_fused_lora_under_bf16_autocast_matches_peft(tiny_dir: Path) -> None:
    batch = _batch(tiny_dir)
    out = {}
    for fused in (False, True):
        model = _model(tiny_dir, dtype=torch.bfloat16)
        if fused:
            fuse_lora(model)
        out[fused] = _loss_and_grads(model, batch, frozen_head=fused)
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
    assert out[True][0] == pytest.approx(out[False][0], rel=2e-2)
    g_peft = torch.cat([g.flatten() for g in out[False][1].values()])
    g_fused = torch.cat([g.flatten() for g in out[True][1].values()])
    assert float(torch.nn.functional.cosine_similarity(g_peft, g_fused, dim=0)) > 0.99


def test_fused_lora_defers_to_peft_where_it_does_not_apply(tiny_dir: Path) -> None:
    batch = _batch(tiny_dir)
    with torch.no_grad():
        model = _model(tiny_dir, lora_bias=True).eval()  # a bias on lora_B: peft scales it, so peft's forward runs
        plain = model(**batch).logits
        fuse_lora(model)
        torch.testing.assert_close(model(**batch).logits, plain, rtol=0, atol=0)
        model = _model(tiny_dir).eval()
        fuse_lora(model)
        fused = model(**batch).logits
        with model.disable_adapter():  # disabled adapters: the base model's output
            assert not torch.allclose(model(**batch).logits, fused)
        model.merge_adapter()  # merged: the base layer alone, with the adapter in its weight
        torch.testing.assert_close(model(**batch).logits, fused, rtol=1e-4, atol=1e-5)


def test_align_with_fused_lora_trains_the_same_curve(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from dcr.align import align
    from tests.align.test_train import _cfg, _losses

    cfg = _cfg(tiny_dir, data_dir, tmp_path, epochs=1, fused_lora=False)
    plain = align(cfg, tmp_path / "plain")
    fused = align(dataclasses.replace(cfg, fused_lora=True), tmp_path / "fused")
    assert [float(v) for _, v in _losses(fused)] == pytest.approx([float(v) for _, v in _losses(plain)], rel=1e-4)
