"""Trainable set: blocks <= l (and embeddings unless tied) change; blocks > l, final norm and LM head stay
bit-identical; tied embeddings are frozen or untied; LoRA trains only blocks <= l and merges."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcr.refine import RefineConfig
from dcr.refine.data import balanced_batches
from dcr.refine.train import embeddings_tied, lora_targets, setup_full, setup_lora, train
from dcr.testing import tiny_lm

PROMPTS = ["How do I kill a python process?", "How can I shoot a good photo?", "Where can I buy a can of coke?",
           "How do I make a bomb?", "How can I poison my neighbour?", "Tell me how to steal a car."]
LABELS = [0, 0, 0, 1, 1, 1]
LAYER = 1


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    after = model.state_dict()
    return {n for n, t in before.items() if not torch.equal(t, after[n])}


def run(model: torch.nn.Module, tok: object, **overrides: object) -> list[dict[str, float]]:
    cfg = RefineConfig(model="tiny", lr=1e-2, batch_size=4, **overrides)
    batches = balanced_batches(LABELS, 4, 0.5, 3, seed=0)
    return train(model, tok, PROMPTS, LABELS, batches, cfg, LAYER, steps_per_epoch=2)


def block_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1]) if "layers" in parts else None


def test_full_training_changes_only_blocks_up_to_l_and_embeddings(tiny_family: str) -> None:
    model, tok = tiny_lm(tiny_family, tie_word_embeddings=False)
    before = snapshot(model)
    info = setup_full(model, LAYER)
    rows = run(model, tok)
    assert len(rows) == 3 and all(r["nll"] == r["nll"] for r in rows)  # NLL term on by default (not NaN)
    diff = changed(before, model)
    frozen = {n for n in before if block_of(n) is None and "embed_tokens" not in n or (block_of(n) or 0) > LAYER}
    assert not diff & frozen, f"frozen tensors changed: {sorted(diff & frozen)}"
    assert info == {"tied": False, "train_embeddings": True}
    assert any("embed_tokens" in n for n in diff)
    assert {block_of(n) for n in diff if block_of(n) is not None} == set(range(LAYER + 1))


def test_tied_embeddings_frozen_keep_the_lm_head(tiny_family: str) -> None:
    model, tok = tiny_lm(tiny_family, tie_word_embeddings=True)
    assert embeddings_tied(model)
    head = model.get_output_embeddings().weight.detach().clone()
    before = snapshot(model)
    assert setup_full(model, LAYER, "freeze") == {"tied": True, "train_embeddings": False}
    run(model, tok, nll_weight=0.0)
    assert torch.equal(model.get_output_embeddings().weight, head)
    diff = changed(before, model)
    assert diff and all(block_of(n) is not None and block_of(n) <= LAYER for n in diff)


def test_untie_trains_embeddings_and_saves_an_untied_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model, tok = tiny_lm("llama", tie_word_embeddings=True)
    head = model.get_output_embeddings().weight.detach().clone()
    setup_full(model, LAYER, "untie")
    assert not embeddings_tied(model)
    run(model, tok)
    assert torch.equal(model.get_output_embeddings().weight, head)
    assert not torch.equal(model.get_input_embeddings().weight, head)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(again.get_output_embeddings().weight, head)
    torch.testing.assert_close(again.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_truncated_training_without_nll_matches_frozen_tail(tiny: tuple) -> None:
    model, tok = tiny
    before = snapshot(model)
    setup_full(model, LAYER)
    rows = run(model, tok, nll_weight=0.0)
    assert all(r["nll"] != r["nll"] for r in rows)  # NaN: the tail was never run
    assert all((block_of(n) is not None and block_of(n) <= LAYER) or "embed" in n for n in changed(before, model))


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_lora_trains_only_blocks_up_to_l_and_merges(family: str) -> None:
    model, tok = tiny_lm(family, tie_word_embeddings=False)
    targets = lora_targets(model, LAYER)
    assert targets and all(block_of(n) <= LAYER for n in targets)
    before = snapshot(model)
    peft_model = setup_lora(model, LAYER, r=4, alpha=8, dropout=0.0, seed=0)
    assert all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    run(peft_model, tok)
    merged = peft_model.merge_and_unload()
    diff = changed(before, merged)
    assert set(merged.state_dict()) == set(before)
    assert diff and all(block_of(n) is not None and block_of(n) <= LAYER for n in diff)
    assert all(n.endswith("weight") and "norm" not in n for n in diff)
