"""RefineConfig: the paper's A.2 defaults, YAML < CLI < --set layering, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcr.config import build_config, describe
from dcr.errors import ConfigError
from dcr.refine import RefineConfig


def test_defaults_are_the_papers() -> None:
    cfg = RefineConfig(model="m")
    assert (cfg.batch_size, cfg.epochs, cfg.margin, cfg.gamma, cfg.nll_weight) == (32, 3, 0.25, 16.0, 0.001)
    # the one departure: lr, chosen under results/refine-collapse/RULE.md (A.2's 1e-4 collapsed Qwen models)
    assert (cfg.lr, RefineConfig(model="m", lora=True).lr, RefineConfig(model="m", lr=3e-4).lr) == (1e-5, 1e-4, 3e-4)
    assert (cfg.pooling, cfg.circle_variant, cfg.tied_embeddings, cfg.toxic_ratio) == ("last", "paper", "freeze", 2.0)
    assert all(help_ for _, help_, _ in describe(RefineConfig))


def test_yaml_then_cli_then_set(tmp_path: Path) -> None:
    y = tmp_path / "exp.yaml"
    y.write_text("refine:\n  model: smollm2-135m\n  epochs: 5\n  margin: 0.3\n  lora: true\n")
    cfg = build_config(RefineConfig, y, {"epochs": 2, "layer": None}, ["margin=0.4", "pooling=mean"], "refine")
    assert (cfg.model, cfg.epochs, cfg.margin, cfg.lora, cfg.pooling, cfg.layer) == ("smollm2-135m", 2, 0.4, True,
                                                                                    "mean", 22)


@pytest.mark.parametrize("bad", ["margin=1.5", "pooling=max", "circle_variant=x", "batch_size=2", "limit=1",
                                 "tied_embeddings=train", "nll_weight=-1", "eval_toxic=none"])
def test_bad_values_raise(bad: str) -> None:
    field = bad.split("=")[0]
    with pytest.raises(ConfigError, match=field):
        build_config(RefineConfig, None, {"model": "m"}, [bad])


def test_model_is_required() -> None:
    with pytest.raises(ConfigError, match="--model"):
        build_config(RefineConfig)


def test_layer_none_is_the_measured_layer_of_an_embedded_model_and_keys_say_so() -> None:
    """smollm2-135m: layer 22 (results/ablations-smollm2); other models keep None = the middle block."""
    from dcr.fingerprint import stage_key

    assert RefineConfig(model="smollm2-135m").layer == 22
    assert RefineConfig(model="smollm2-135m", layer=15).layer == 15
    assert RefineConfig(model="gemma3-270m").layer is None
    assert RefineConfig(model="some/local-dir").layer is None
    assert stage_key(RefineConfig(model="smollm2-135m")) == stage_key(RefineConfig(model="smollm2-135m", layer=22))
    assert stage_key(RefineConfig(model="smollm2-135m")) != stage_key(RefineConfig(model="smollm2-135m", layer=15))
