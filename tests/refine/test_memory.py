"""The refine memory estimate: an accounting that moves the right way with each setting, and a refusal before
anything is written that names the settings that would fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import Qwen2Config

from dcr.errors import ConfigError
from dcr.refine import RefineConfig, refine
from dcr.refine.memory import GB, check_fits, estimate

QWEN15 = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                     num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)


def cfg(**kw: object) -> SimpleNamespace:
    base = {"layer": 13, "lora": False, "lora_r": 16, "tied_embeddings": "freeze", "truncated_load": True,
            "nll_weight": 0.001, "truncate_forward": True, "micro_batch": None, "batch_size": 32, "max_length": 256,
            "gradient_checkpointing": False, "nll_chunk": 256}
    return SimpleNamespace(**{**base, **kw})


def total(c: SimpleNamespace, frozen: int = 2) -> float:
    return sum(estimate(c, QWEN15, 90, frozen, True).values())


def test_estimate_accounts_for_the_trainable_blocks_at_1p5b() -> None:
    parts = estimate(cfg(), QWEN15, 90, 2, True)
    # blocks 0..13 of Qwen2.5-1.5B: 14 x 46.8 M = 655 M trainable; gradients + two AdamW moments at 12 bytes each
    assert parts["gradients+AdamW"] == pytest.approx(655e6 * 12, rel=0.01)
    assert parts["weights"] == pytest.approx(655e6 * 4 + 655e6 * 2 + 151936 * 1536 * 4, rel=0.01)
    assert total(cfg(micro_batch=8)) < total(cfg())
    assert total(cfg(micro_batch=8, gradient_checkpointing=True)) < total(cfg(micro_batch=8))
    assert total(cfg(lora=True)) < total(cfg())
    assert total(cfg(), frozen=4) > total(cfg())
    assert estimate(cfg(nll_weight=0.0), QWEN15, 90, 2, True)["NLL logits"] == 0
    untied = estimate(cfg(tied_embeddings="untie"), QWEN15, 90, 2, True)
    assert untied["gradients+AdamW"] == pytest.approx((655e6 + 151936 * 1536) * 12, rel=0.01)


def test_a_run_that_does_not_fit_refuses_before_anything_is_written(tiny_dir: Path, data_dir: Path,
                                                                     tmp_path: Path) -> None:
    c = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), layer=1, limit=8, epochs=1, batch_size=8,
                     memory_check=False)
    need = sum(check_fits(c, limit=1e15).values())
    small = dataclasses.replace(c, memory_check=True, memory_limit_gb=(need - 1e5) / GB)
    with pytest.raises(ConfigError, match=r"refine of .* needs about .* GB \(.*batch 8, longest prompt \d+ tokens\) "
                                          r"but .* GB is available\. "
                                          r"Fix: pass --[a-z-]+.* \(.* GB\).*or --no-memory-check"):
        refine(small, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="Fix: use a smaller model or batch"):
        check_fits(c, limit=1.0)
